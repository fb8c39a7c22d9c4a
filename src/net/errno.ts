// errno numbers -> names ("EAGAIN"), for one-line errors.
import { constants as os } from "node:os";

const names = Object.fromEntries(Object.entries(os.errno).map(([k, v]) => [v, k])) as Record<number, string>;
export function errnoName(n: number): string {
  return names[n] ?? `errno ${n}`;
}
