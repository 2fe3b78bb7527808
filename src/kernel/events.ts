// The one place decoded rtnetlink messages become domain events (domain/events.ts): the
// message type says add or delete, NLM_F_REPLACE says a route took over its slot, and
// messages that say nothing about the objects symroute reasons about (cloned routes,
// families the model has no place for) become nothing.
import type { Change } from '../domain/diff.js';
import type { KernelEvent } from '../domain/events.js';
import {
  NLM_F_REPLACE,
  RTM_DELADDR,
  RTM_DELLINK,
  RTM_DELROUTE,
  RTM_DELRULE,
  RTM_F_CLONED,
} from '../netlink/constants.js';
import type { RtnlBody } from '../netlink/messages.js';
import { addressFromMessage, linkFromMessage, routeFromMessage, ruleFromMessage } from './objects.js';

/** `type` is the message's nlmsg_type (RTM_NEW* or RTM_DEL*), `flags` its nlmsg_flags. */
export function eventFromMessage(type: number, flags: number, body: RtnlBody): KernelEvent | undefined {
  switch (body.kind) {
    case 'link': {
      const link = linkFromMessage(body);
      return link && { kind: 'link', op: type === RTM_DELLINK ? 'delete' : 'set', link };
    }
    case 'address': {
      const address = addressFromMessage(body);
      return address && { kind: 'address', op: type === RTM_DELADDR ? 'delete' : 'set', address };
    }
    case 'route': {
      // A cached clone (PMTU, redirects) is not a route anyone configured.
      if (body.header.flags & RTM_F_CLONED) return undefined;
      const route = routeFromMessage(body);
      if (!route) return undefined;
      const op = type === RTM_DELROUTE ? 'delete' : flags & NLM_F_REPLACE ? 'replace' : 'add';
      return { kind: 'route', op, route };
    }
    case 'rule': {
      const rule = ruleFromMessage(body);
      return rule && { kind: 'rule', op: type === RTM_DELRULE ? 'delete' : 'add', rule };
    }
  }
}

/**
 * The event a notification stands for that echoes symroute's own request for `change`, and
 * says exactly what it asked (kernel/objects.ts echoes()): the object the change was made
 * from, the operation read from the notification as eventFromMessage reads it.
 */
export function eventFromEcho(type: number, flags: number, change: Change): KernelEvent {
  if (change.kind === 'rule') return { kind: 'rule', op: type === RTM_DELRULE ? 'delete' : 'add', rule: change.rule };
  return { kind: 'route', op: type === RTM_DELROUTE ? 'delete' : flags & NLM_F_REPLACE ? 'replace' : 'add', route: change.route };
}
