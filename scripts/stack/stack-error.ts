import { relative } from 'node:path';

/**
 * A part of the stack that could not be fetched, started or reached. Printed as one
 * line: the part, the reason, and the log file to read.
 */
export class StackError extends Error {
  constructor(
    readonly part: string,
    readonly reason: string,
    readonly logFile?: string,
  ) {
    super(`${part}: ${reason}`);
  }

  line(cwd: string): string {
    const log = this.logFile ? ` (log: ${relative(cwd, this.logFile) || this.logFile})` : '';
    return `${this.part}: ${this.reason}${log}`;
  }
}
