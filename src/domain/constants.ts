// Kernel values the domain reasons with, as numbers stored in model fields (Address.flags,
// Route.scope/type/table, Rule.action). They are the kernel's own (if_addr.h, rtnetlink.h,
// fib_rules.h), so the kernel adapter copies them across without translation.

// Address flags (IFA_F_*)
export const IFA_F_SECONDARY = 0x01;
export const IFA_F_DADFAILED = 0x08;
export const IFA_F_DEPRECATED = 0x20;
export const IFA_F_TENTATIVE = 0x40;

// Route scopes, types and the kernel's own tables
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_SITE = 200;
export const RT_SCOPE_LINK = 253;
export const RT_SCOPE_HOST = 254;
export const RTN_UNICAST = 1;
export const RTN_LOCAL = 2;
export const RT_TABLE_UNSPEC = 0;
export const RT_TABLE_MAIN = 254;
export const RT_TABLE_LOCAL = 255;

// Rule actions
export const FR_ACT_TO_TBL = 1;
export const FR_ACT_GOTO = 2;
export const FR_ACT_NOP = 3;
export const FR_ACT_PROHIBIT = 8;
