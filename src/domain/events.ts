// What the kernel says happened, in domain terms: the kernel adapter (kernel/events.ts) turns
// each rtnetlink notification or dump part into one of these, and the mirror applies them.
import type { Address, Link, Route, Rule } from './model.js';

export type KernelEvent =
  /** A link appeared or changed (`set`), or is gone. */
  | { readonly kind: 'link'; readonly op: 'set' | 'delete'; readonly link: Link }
  | { readonly kind: 'address'; readonly op: 'set' | 'delete'; readonly address: Address }
  /** `replace`: the route took the place of whatever held its slot (NLM_F_REPLACE). */
  | { readonly kind: 'route'; readonly op: 'add' | 'replace' | 'delete'; readonly route: Route }
  | { readonly kind: 'rule'; readonly op: 'add' | 'delete'; readonly rule: Rule };
