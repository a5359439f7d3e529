/**
 * Reads the offline dataset back from the S3 endpoint with pyarrow (not our writer), the way
 * a warehouse job would, following the reader protocol: a day with `_manifest.json` is read
 * from exactly the files it lists; a day without one (still open) from its exporter files.
 */
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { uniqueName } from './infra.ts';
import { PY_READ_MANIFEST, PY_S3_FS, pythonS3Args, runPython } from './pyarrow.ts';

const READER = String.raw`
import json, sys, hmac, hashlib
import pyarrow as pa, pyarrow.parquet as pq, pyarrow.fs as pafs, pyarrow.compute as pc
a = args = json.load(open(sys.argv[1]))
${PY_S3_FS}
${PY_READ_MANIFEST}
root = args["bucket"] + "/" + args["prefix"]
days = sorted(i.base_name[3:] for i in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
              if i.type == pafs.FileType.Directory and i.base_name.startswith("dt="))
if args.get("days"): days = [d for d in days if d in args["days"]]
tables, report = [], {}
for d in days:
    base = f"{root}/dt={d}/"
    m = read_manifest(fs, base + "_manifest.json")
    if m is not None:
        names = [x["name"] for x in m["files"]]
        report[d] = {"sealed": True, "generation": m["generation"], "files": len(names)}
    else:
        names = sorted(i.base_name for i in fs.get_file_info(pafs.FileSelector(base))
                       if i.base_name.startswith("part-") and i.base_name.endswith(".parquet"))
        report[d] = {"sealed": False, "files": len(names)}
    for n in names:
        pf = pq.ParquetFile(base + n, filesystem=fs)
        md = pf.metadata.metadata or {}
        assert md.get(b"erasure.dataset.schema_version") == b"1", "schema version in file metadata"
        tables.append(pf.read())
ids = set(args.get("eventIds") or [])
rows = []
if tables:
    t = pa.concat_tables(tables)
    if ids: t = t.filter(pc.is_in(t["event_id"], value_set=pa.array(sorted(ids))))
    types = {f.name: str(f.type) for f in t.schema}
    for r in t.to_pylist():
        r["identifier_hmac"] = r["identifier_hmac"].hex()
        for k in ("requested_at", "event_time"): r[k] = int(r[k].timestamp() * 1000)
        rows.append(r)
else:
    types = {}
purge = []
wh = args.get("warehouse")
if wh and tables:
    key = args["hmacKey"].encode()
    # The warehouse keeps plain values in one table and only keyed hashes in another.
    w = pa.table({"row_id": [x["rowId"] for x in wh], "identifier_type": [x["type"] for x in wh],
                  "identifier_value": [x["value"] for x in wh]})
    hashed = pa.table({"row_id": pa.array([x["rowId"] for x in wh]),
                       "h": pa.array([hmac.new(key, (x["type"] + "\0" + x["value"]).encode(), hashlib.sha256).digest() for x in wh],
                                     type=pa.binary(32))})
    ds = pa.concat_tables(tables)
    by_value = w.join(ds.select(["identifier_type", "identifier_value"]).group_by(["identifier_type", "identifier_value"]).aggregate([]),
                      keys=["identifier_type", "identifier_value"], join_type="inner")
    by_hash = hashed.join(ds.select(["identifier_hmac"]).rename_columns(["h"]).group_by(["h"]).aggregate([]),
                          keys=["h"], join_type="inner")
    purge = {"byValue": sorted(by_value["row_id"].to_pylist()), "byHmac": sorted(by_hash["row_id"].to_pylist())}
print(json.dumps({"days": report, "rows": rows, "types": types, "purge": purge}))
`;

export interface DatasetRowRead {
  event_id: string;
  request_id: string;
  identifier_type: string;
  identifier_value: string;
  identifier_hmac: string;
  reason: string;
  priority: string;
  requested_at: number;
  event_time: number;
  dt: string;
  redelivery_target: string | null;
  kafka_partition: number | null;
  kafka_offset: number | null;
  source: string;
  schema_version: number;
}

export interface DatasetRead {
  days: Record<string, { sealed: boolean; generation?: number; files: number }>;
  rows: DatasetRowRead[];
  types: Record<string, string>;
  purge: { byValue: string[]; byHmac: string[] } | [];
}

export async function readDataset(
  prefix: string,
  opts: {
    eventIds?: string[];
    days?: string[];
    warehouse?: { rowId: string; type: string; value: string }[];
    hmacKey?: string;
  } = {},
): Promise<DatasetRead> {
  const file = join(tmpdir(), `${uniqueName('dataset-read')}.json`);
  writeFileSync(file, JSON.stringify({ ...pythonS3Args(prefix), ...opts }));
  return runPython<DatasetRead>(READER, [file]);
}
