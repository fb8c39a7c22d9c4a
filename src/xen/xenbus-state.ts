// XenbusState (xen/include/public/io/xenbus.h).
export const XenbusState = {
  Unknown: 0,
  Initialising: 1,
  InitWait: 2,
  Initialised: 3,
  Connected: 4,
  Closing: 5,
  Closed: 6,
  Reconfiguring: 7,
  Reconfigured: 8,
} as const;
export type XenbusState = (typeof XenbusState)[keyof typeof XenbusState];

const names = Object.fromEntries(Object.entries(XenbusState).map(([k, v]) => [v, k])) as Record<number, string>;

export function xenbusStateName(s: number): string {
  return names[s] ?? `Invalid(${s})`;
}
