// libxl's log lines as xl prints them on stderr ("libxl: error: libxl_device.c:NNN:func: Domain 3:msg"),
// minus the line number, which would only pretend to point into a source we do not run. xl's
// default threshold shows info and above, so debug lines are dropped unless asked for.

export type LibxlLevel = "debug" | "info" | "warning" | "error";

export interface LibxlLog {
  (level: LibxlLevel, where: string, domid: number | undefined, msg: string): void;
}

export function libxlLine(level: LibxlLevel, where: string, domid: number | undefined, msg: string): string {
  return `libxl: ${level}: ${where}: ${domid === undefined ? "" : `Domain ${domid}:`}${msg}`;
}

export function libxlLogTo(write: (line: string) => void, opts: { debug?: boolean } = {}): LibxlLog {
  return (level, where, domid, msg) => {
    if (level === "debug" && !opts.debug) return;
    write(libxlLine(level, where, domid, msg));
  };
}

/** libxl error codes that show up in the messages (libxl_types.idl: libxl_error). */
export const LibxlRc = { FAIL: -3, INVAL: -6, TIMEDOUT: -9 } as const;
