// The layers of ARCHITECTURE.md hold: dependency-cruiser checks every import of src/ against
// .dependency-cruiser.cjs (no cycles, nothing imported from a layer above or beside).
import { createRequire } from 'node:module';
import { cruise, type IConfiguration, type ICruiseResult } from 'dependency-cruiser';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const config = require('../../.dependency-cruiser.cjs') as IConfiguration;

describe('imports', () => {
  it('follow the layers, in no circle', async () => {
    const { output } = await cruise(['src'], { ...config.options, validate: true, ruleSet: { forbidden: config.forbidden ?? [] } });
    const result = output as ICruiseResult;
    // The cruise saw the tree (a wrong path would find nothing and no violation).
    expect(result.summary.totalCruised).toBeGreaterThan(50);
    const violations = result.summary.violations.map(
      (v) => `${v.rule.name}: ${v.from} → ${v.to}${v.cycle ? ` (${v.cycle.map((step) => step.name).join(' → ')})` : ''}`,
    );
    expect(violations).toEqual([]);
  });
});
