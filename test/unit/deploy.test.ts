// deploy/kubernetes/ against the official Kubernetes OpenAPI schemas (kubernetes-models
// ships validators generated from them, and from the prometheus-operator's CRDs), offline;
// then held to what the daemon and the image actually do: the probes' paths and port, the
// config file's place and contents, the capabilities, and the rollout rules.
import { basename, dirname, join } from 'node:path';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { PodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import type { IPodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/config.js';
import { dockerfileExec, findManifest, KUBERNETES, kustomize, parseYaml, type Manifest } from '../support/deploy.js';

const VALIDATORS: Record<string, (manifest: Manifest) => { validate(): void }> = {
  'v1/ConfigMap': (m) => new ConfigMap(m as never),
  'apps/v1/DaemonSet': (m) => new DaemonSet(m as never),
  'monitoring.coreos.com/v1/PodMonitor': (m) => new PodMonitor(m as never),
};

const base = kustomize(KUBERNETES);
const withMonitoring = kustomize(join(KUBERNETES, 'monitoring'));
const daemonSet = findManifest<IDaemonSet>(base, 'DaemonSet');
const configMap = findManifest<IConfigMap>(base, 'ConfigMap');
const podMonitor = findManifest<IPodMonitor>(withMonitoring, 'PodMonitor');
const pod = daemonSet.spec!.template.spec!;
const container = pod.containers[0]!;
const command = [...dockerfileExec('ENTRYPOINT'), ...dockerfileExec('CMD')];

describe('deploy/kubernetes', () => {
  it('holds only objects that pass the official schemas', () => {
    expect(base.map((m) => m.kind).sort()).toEqual(['ConfigMap', 'DaemonSet']);
    expect(withMonitoring.map((m) => m.kind).sort()).toEqual(['ConfigMap', 'DaemonSet', 'PodMonitor']);
    for (const manifest of withMonitoring) {
      const validator = VALIDATORS[`${manifest.apiVersion}/${manifest.kind}`];
      expect(validator, `${manifest.apiVersion} ${manifest.kind}`).toBeDefined();
      expect(() => validator!(manifest).validate(), `${manifest.kind} ${manifest.metadata.name}`).not.toThrow();
    }
  });

  it('the schema check can fail', () => {
    const broken = structuredClone(daemonSet) as unknown as Manifest & { spec: { template: { spec: { containers: Array<{ ports: unknown[] }> } } } };
    broken.spec.template.spec.containers[0]!.ports = [{ containerPort: 'metrics' }];
    expect(() => new DaemonSet(broken as never).validate()).toThrow(/containerPort must be integer/);
  });

  it('kustomizations are well formed and name the namespace', () => {
    for (const dir of [KUBERNETES, join(KUBERNETES, 'monitoring')]) {
      const [k] = parseYaml(join(dir, 'kustomization.yaml')) as Array<Record<string, unknown>>;
      expect(k).toMatchObject({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', namespace: 'kube-system' });
    }
    const [k] = parseYaml(join(KUBERNETES, 'kustomization.yaml')) as Array<{ images: Array<{ name: string }> }>;
    expect(k!.images.map((i) => i.name)).toEqual([container.image]);
  });

  it('runs one pod per node in the node network, on every node, before ordinary pods, rolling 10% at a time', () => {
    expect(pod.hostNetwork).toBe(true);
    expect(pod.priorityClassName).toBe('system-node-critical');
    expect(pod.tolerations).toEqual([{ operator: 'Exists' }]); // no key: every taint
    expect(daemonSet.spec!.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '10%' } });
    expect(pod.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux' });
    expect(daemonSet.spec!.selector.matchLabels).toEqual(daemonSet.spec!.template.metadata!.labels);
  });

  it('holds NET_ADMIN and no other capability, and cannot gain any', () => {
    expect(pod.containers).toHaveLength(1);
    expect(container.securityContext).toMatchObject({
      runAsUser: 0,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] },
    });
    expect(container.securityContext!.privileged).toBeUndefined();
    expect(pod.automountServiceAccountToken).toBe(false);
  });

  it("runs the image's entrypoint, watching the config the ConfigMap mounts, whole directory", () => {
    expect(container.command).toBeUndefined();
    expect(container.args).toBeUndefined();
    expect(command).toContain('--watch-config');
    const configPath = command[command.indexOf('--config') + 1]!;
    const mount = container.volumeMounts!.find((m) => m.mountPath === dirname(configPath));
    expect(mount, `a volume mounted at ${dirname(configPath)}`).toBeDefined();
    expect(mount!.subPath).toBeUndefined(); // the kubelet never updates subPath mounts
    expect(mount!.readOnly).toBe(true);
    const volume = pod.volumes!.find((v) => v.name === mount!.name);
    expect(volume!.configMap!.name).toBe(configMap.metadata!.name);
    expect(Object.keys(configMap.data!)).toContain(basename(configPath));
  });

  it('probes /healthz (ready) and /livez (alive) on the port the ConfigMap has symroute listen on, on every address', () => {
    const config = parseConfig(Object.values(configMap.data!)[0]!, 'configmap.yaml');
    expect(config.metrics.listen).toEqual({ host: '0.0.0.0', port: 9477 });
    const port = container.ports!.find((p) => p.name === 'metrics')!;
    expect(port).toEqual({ name: 'metrics', containerPort: 9477, protocol: 'TCP' });
    expect(container.readinessProbe!.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(container.livenessProbe!.httpGet).toEqual({ path: '/livez', port: 'metrics' });
    // /livez waits up to 2 s for each netlink ping; the probe must wait longer.
    expect(container.livenessProbe!.timeoutSeconds).toBeGreaterThan(2);
  });

  it('has a PodMonitor that scrapes the metrics port of exactly these pods', () => {
    expect(podMonitor.spec.selector.matchLabels).toEqual(daemonSet.spec!.template.metadata!.labels);
    expect(podMonitor.spec.podMetricsEndpoints).toEqual([{ port: 'metrics', path: '/metrics', interval: '30s' }]);
  });
});
