// deploy/kubernetes/ against the official Kubernetes OpenAPI schemas (kubernetes-models
// ships validators generated from them, and from the prometheus-operator's CRDs), offline;
// the validators ignore fields they do not know, so tsc checks the manifests against the
// models' generated types for those; then held to what the daemon and the image actually do:
// the probes' paths and port, the config file's place and contents, the capabilities, and the
// rollout rules.
import { basename, dirname, join } from 'node:path';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { PodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import type { IPodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/config.js';
import { dockerfileExec, findManifest, KUBERNETES, kustomize, manifestTypeErrors, parseYaml, type Manifest, type ModelType } from '../support/deploy.js';

// Each kind's generated validator, and its generated interface for the unknown-field check.
const MODELS: Record<string, { validator: (manifest: Manifest) => { validate(): void }; type: ModelType }> = {
  'v1/ConfigMap': {
    validator: (m) => new ConfigMap(m as never),
    type: { module: 'kubernetes-models/v1/ConfigMap', name: 'IConfigMap' },
  },
  'apps/v1/DaemonSet': {
    validator: (m) => new DaemonSet(m as never),
    type: { module: 'kubernetes-models/apps/v1/DaemonSet', name: 'IDaemonSet' },
  },
  'monitoring.coreos.com/v1/PodMonitor': {
    validator: (m) => new PodMonitor(m as never),
    type: { module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor', name: 'IPodMonitor' },
  },
};
const model = (manifest: Manifest) => MODELS[`${manifest.apiVersion}/${manifest.kind}`];
const typed = (manifests: Manifest[]) => manifests.map((manifest) => ({ manifest, type: model(manifest)!.type }));

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
      expect(model(manifest), `${manifest.apiVersion} ${manifest.kind}`).toBeDefined();
      expect(() => model(manifest)!.validator(manifest).validate(), `${manifest.kind} ${manifest.metadata.name}`).not.toThrow();
    }
  });

  it('holds no field the schemas do not know', () => {
    expect(manifestTypeErrors(typed(withMonitoring))).toEqual([]);
  });

  it('the schema check can fail', () => {
    const broken = structuredClone(daemonSet) as unknown as Manifest & { spec: { template: { spec: { containers: Array<{ ports: unknown[] }> } } } };
    broken.spec.template.spec.containers[0]!.ports = [{ containerPort: 'metrics' }];
    expect(() => new DaemonSet(broken as never).validate()).toThrow(/containerPort must be integer/);
  });

  it('the unknown-field check can fail, naming the field and the manifest, where the schema check does not', () => {
    const misspelt = structuredClone(daemonSet) as unknown as Manifest & { spec: { template: { spec: { containers: Array<Record<string, unknown>> } } } };
    const misspeltContainer = misspelt.spec.template.spec.containers[0]!;
    misspeltContainer.readinesProbe = misspeltContainer.readinessProbe;
    delete misspeltContainer.readinessProbe;
    const monitor = structuredClone(podMonitor) as unknown as Manifest & { spec: { podMetricsEndpoints: Array<Record<string, unknown>> } };
    monitor.spec.podMetricsEndpoints[0]!.intervall = '30s';
    expect(() => new DaemonSet(misspelt as never).validate()).not.toThrow();
    expect(() => new PodMonitor(monitor as never).validate()).not.toThrow();
    const errors = manifestTypeErrors(typed([configMap as unknown as Manifest, misspelt, monitor]));
    expect(errors).toEqual([
      expect.stringMatching(new RegExp(`^DaemonSet ${daemonSet.metadata!.name}, line \\d+: error TS\\d+: .*readinesProbe\\W+ does not exist in type 'IContainer'`)),
      expect.stringMatching(new RegExp(`^PodMonitor ${podMonitor.metadata!.name}, line \\d+: error TS\\d+: .*intervall\\W+ does not exist`)),
    ]);
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
