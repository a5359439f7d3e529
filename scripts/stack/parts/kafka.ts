import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { livePid, runLogged, spawnDaemon, stopDaemon, waitUntil } from '../processes.ts';
import { StackError } from '../stack-error.ts';
import { mavenClasspath, renderTemplate, requireJava } from '../toolchain.ts';
import type { StackConfig } from '../stack-config.ts';
import type { Part } from './part.ts';

/** Heap per node: Kafka leans on the page cache, not the heap. */
const KAFKA_HEAP = ['-Xms256m', '-Xmx512m'];
export const HEALTH_TOPIC = '_stack.health';

export function createKafkaPart(cfg: StackConfig): Part {
  const name = 'kafka';
  const n = cfg.kafkaNodes;
  const external = cfg.infra.external.kafka;
  // Separate data for the two modes: a KRaft log formatted for one quorum cannot join another.
  const mode = n === 1 ? 'kafka' : 'kafka-3node';
  const nodes = Array.from({ length: n }, (_, i) => ({
    id: i + 1,
    brokerPort: cfg.ports.kafkaPort + i,
    controllerPort: cfg.ports.kafkaPort + 10_000 + i,
    dir: join(cfg.dataDir, mode, `node-${i + 1}`),
    pidFile: join(cfg.runDir, `kafka-${i + 1}.pid`),
    logFile: join(cfg.logsDir, n === 1 ? 'kafka.log' : `kafka-${i + 1}.log`),
  }));
  const voters = nodes.map((nd) => `${nd.id}@127.0.0.1:${nd.controllerPort}`).join(',');
  const brokers = external ? [...cfg.infra.kafkaBrokers] : nodes.map((nd) => `127.0.0.1:${nd.brokerPort}`);
  let classpath = '';

  const javaArgs = (mainClass: string, args: string[]) => [
    ...KAFKA_HEAP,
    '-XX:+UseG1GC',
    '-XX:MaxGCPauseMillis=20',
    '-Djava.awt.headless=true',
    '-Dorg.slf4j.simpleLogger.showDateTime=true',
    '-Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients=warn',
    '-cp',
    classpath,
    mainClass,
    ...args,
  ];

  async function formatNode(nd: (typeof nodes)[number], clusterId: string): Promise<void> {
    mkdirSync(nd.dir, { recursive: true });
    const props = join(nd.dir, 'server.properties');
    writeFileSync(
      props,
      renderTemplate(cfg, 'kafka/server.properties', {
        NODE_ID: nd.id,
        VOTERS: voters,
        BROKER_PORT: nd.brokerPort,
        CONTROLLER_PORT: nd.controllerPort,
        LOG_DIR: join(nd.dir, 'log'),
        REPLICATION_FACTOR: n,
        MIN_ISR: n === 1 ? 1 : 2,
      }),
    );
    if (existsSync(join(nd.dir, 'log', 'meta.properties'))) return;
    try {
      await runLogged('java', javaArgs('kafka.tools.StorageTool', ['format', '-t', clusterId, '-c', props]), {
        logFile: nd.logFile,
        timeoutMs: 120_000,
      });
    } catch (err) {
      throw new StackError(name, `formatting the KRaft log failed: ${(err as Error).message}`, nd.logFile);
    }
  }

  return {
    name,
    processCount: n,
    dependsOn: [],
    external,
    endpoint: brokers.join(','),
    logFile: nodes[0]!.logFile,
    ports: nodes.flatMap((nd) => [nd.brokerPort, nd.controllerPort]),
    async fetch() {
      if (external) return;
      requireJava(name);
      classpath = await mavenClasspath(cfg, name, 'kafka');
      const idFile = join(cfg.dataDir, mode, 'cluster-id');
      mkdirSync(join(cfg.dataDir, mode), { recursive: true });
      // A KRaft cluster id is 16 random bytes in URL-safe base64 without padding.
      if (!existsSync(idFile)) writeFileSync(idFile, randomBytes(16).toString('base64url') + '\n');
      const clusterId = readFileSync(idFile, 'utf8').trim();
      for (const nd of nodes) await formatNode(nd, clusterId);
    },
    running() {
      return nodes.map((nd) => livePid(nd.pidFile)).filter((p): p is number => p !== undefined);
    },
    async start() {
      for (const nd of nodes) {
        if (livePid(nd.pidFile) !== undefined) continue;
        spawnDaemon({
          command: 'java',
          args: javaArgs('kafka.Kafka', [join(nd.dir, 'server.properties')]),
          cwd: nd.dir,
          logFile: nd.logFile,
          pidFile: nd.pidFile,
        });
      }
    },
    async probe(timeoutMs) {
      const pids = external ? [] : nodes.map((nd) => livePid(nd.pidFile));
      const deadline = Date.now() + timeoutMs;
      const kafka = new Kafka({
        clientId: 'stack-probe',
        brokers,
        logLevel: logLevel.NOTHING,
        connectionTimeout: 3000,
        retry: { retries: 2 },
      });
      const admin = kafka.admin();
      const producer = kafka.producer({ allowAutoTopicCreation: false });
      const consumer = kafka.consumer({ groupId: `_stack.probe.${randomUUID()}` });
      try {
        await waitUntil(
          async () => {
            for (const [i, pid] of pids.entries()) {
              if (pid === undefined) throw new Error(`node ${i + 1} is not running`);
            }
            await admin.connect();
            const existing = await admin.listTopics();
            if (!existing.includes(HEALTH_TOPIC)) {
              await admin.createTopics({
                waitForLeaders: true,
                topics: [
                  {
                    topic: HEALTH_TOPIC,
                    numPartitions: 1,
                    replicationFactor: external ? -1 : n,
                    // Only probe markers live here; keep an hour of them.
                    configEntries: [{ name: 'retention.ms', value: '3600000' }],
                  },
                ],
              });
            }
          },
          { what: 'accepting topic commands', timeoutMs, pid: pids[0] },
        );
        // A real round trip: produce with acks=all, then read the same record back.
        const marker = randomUUID();
        await producer.connect();
        const [meta] = await waitUntil(
          () => producer.send({ topic: HEALTH_TOPIC, acks: -1, messages: [{ key: 'probe', value: marker }] }),
          { what: 'accepting writes', timeoutMs: Math.max(1000, deadline - Date.now()) },
        );
        if (meta?.errorCode) throw new Error(`produce answered error code ${meta.errorCode}`);
        await consumer.connect();
        // From the beginning, not a seek: a seek issued before the group assignment can be
        // lost, and the topic only ever holds an hour of small markers.
        await consumer.subscribe({ topic: HEALTH_TOPIC, fromBeginning: true });
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error('produced a record but could not consume it back')),
            Math.max(5000, deadline - Date.now()),
          );
          consumer
            .run({
              eachMessage: async ({ message }) => {
                if (message.value?.toString() === marker) {
                  clearTimeout(timer);
                  resolve();
                }
              },
            })
            .catch(reject);
        });
      } catch (err) {
        throw new StackError(name, (err as Error).message, external ? undefined : nodes[0]!.logFile);
      } finally {
        await Promise.allSettled([consumer.disconnect(), producer.disconnect(), admin.disconnect()]);
      }
    },
    async stop() {
      let any = false;
      for (const nd of [...nodes].reverse()) any = (await stopDaemon(nd.pidFile, 'SIGTERM', 30_000)) || any;
      return any;
    },
  };
}
