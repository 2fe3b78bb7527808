// Convergence on the real kernel, as the daemon measures it (symroute_convergence_seconds:
// from reading the event off the socket to the kernel's last ACK): start-up with many NICs,
// then repeated address adds and removals on a running daemon. Run as root: `npm run bench`.
import { Lab } from '../support/lab.js';

const NICS = 32;
const ROUNDS = 50;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function report(name: string, samplesSeconds: number[]): void {
  const ms = samplesSeconds.map((s) => s * 1000).sort((a, b) => a - b);
  const fmt = (v: number) => `${v.toFixed(2)} ms`;
  console.log(
    `${name.padEnd(44)} n=${String(ms.length).padEnd(4)} p50 ${fmt(percentile(ms, 50))}  p90 ${fmt(percentile(ms, 90))}  max ${fmt(ms[ms.length - 1]!)}`,
  );
}

async function main(): Promise<void> {
  const lab = new Lab();
  try {
    const host = await lab.namespace('h');
    const peer = await lab.namespace('p');
    for (let k = 0; k < NICS; k++) {
      await lab.veth(host, `n${k}`, peer, `q${k}`);
      await lab.ip(host, 'addr', 'add', `198.18.${k}.10/24`, 'dev', `n${k}`);
    }
    const daemon = lab.startDaemon(host, ['--config', lab.writeConfig('metrics:\n  listen: false\n')]);
    const durations = () => daemon.records.filter((r) => typeof r.durationSeconds === 'number').map((r) => r.durationSeconds as number);
    const nextConvergence = async (count: number) => {
      const deadline = Date.now() + 10_000;
      while (durations().length < count) {
        if (Date.now() > deadline) throw new Error('no convergence within 10 s');
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    };
    await nextConvergence(1);
    report(`start-up, ${NICS} NICs (${NICS} rules, ${NICS} routes)`, durations());

    const adds: number[] = [];
    const removes: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const nic = `n${round % NICS}`;
      const address = `198.18.${round % NICS}.${100 + (round % 100)}/24`;
      // Count before acting: the daemon may log the convergence before `ip` even returns.
      const before = durations().length;
      await lab.ip(host, 'addr', 'add', address, 'dev', nic);
      await nextConvergence(before + 1);
      adds.push(durations().at(-1)!);
      await lab.ip(host, 'addr', 'del', address, 'dev', nic);
      await nextConvergence(before + 2);
      removes.push(durations().at(-1)!);
    }
    report('second address added (1 rule)', adds);
    report('second address removed (1 rule)', removes);
    await daemon.stop();
  } finally {
    await lab.cleanup();
  }
}

await main();
