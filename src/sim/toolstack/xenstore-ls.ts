// `xenstore-ls -f`: every node as `path = "value"`, depth first in directory order.
import type { XenstoreClient } from "../../xenstore/index.ts";

export interface LsOptions {
  /** Skip nodes whose value is empty and that have children (pure directories). */
  compact?: boolean;
  /** Subtrees not to descend into. */
  skip?: string[];
}

export async function xenstoreLs(xs: XenstoreClient, root = "/", opts: LsOptions = {}): Promise<string[]> {
  const lines: string[] = [];
  const walk = async (path: string): Promise<void> => {
    if (opts.skip?.includes(path)) return;
    const value = await xs.tryRead(path);
    if (value === undefined) return; // removed while we walked
    const children = await xs.directory(path).catch(() => [] as string[]);
    if (path !== "/" && !(opts.compact && value === "" && children.length)) lines.push(`${path} = ${JSON.stringify(value)}`);
    for (const c of children) await walk(path === "/" ? `/${c}` : `${path}/${c}`);
  };
  await walk(root);
  return lines;
}
