import type { StackConfig } from '../stack-config.ts';

export type PartName = 'postgres' | 'kafka' | 'registry' | 's3';

/**
 * One component of the local stack. `up` calls fetch → start (only when not already
 * running) → probe; `probe` sends a real request (a query, a message, a schema, an object).
 */
export interface Part {
  readonly name: PartName;
  readonly dependsOn: readonly PartName[];
  /** True when the environment points at an existing service: never started or stopped here. */
  readonly external: boolean;
  /** Where clients reach it, for status lines. */
  readonly endpoint: string;
  readonly logFile: string;
  /** Local TCP ports the part listens on (checked for other listeners before starting). */
  readonly ports: readonly number[];
  /** Downloads or installs what the part needs; a no-op when already present. */
  fetch(): Promise<void>;
  /** Pids of our running processes for this part (empty when stopped). */
  running(): number[];
  /** How many processes the part runs when fully up (three Kafka nodes in three-node mode). */
  readonly processCount: number;
  /** Starts the part's processes; resolves once they have been spawned. */
  start(): Promise<void>;
  /** Waits (bounded) until the part answers a real request; throws with the reason. */
  probe(timeoutMs: number): Promise<void>;
  stop(): Promise<boolean>;
}

export type PartFactory = (cfg: StackConfig) => Part;
