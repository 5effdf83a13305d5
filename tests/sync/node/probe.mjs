// Drives the real @electric-sql/client (ShapeStream) or a TanStack DB electric
// collection against a threadkeep server and reports, one JSON object per line
// on stdout, every batch / change / error / answer. Commands arrive as JSON lines
// on stdin. One process per case: the client keeps module-level caches.
//
// Env: PROBE_URL (shape URL), PROBE_TOKEN, PROBE_MODE=stream|collection,
// PROBE_PARAMS (JSON object of extra params, e.g. a hostile `where`),
// PROBE_OFFSET / PROBE_HANDLE (resume), PROBE_LIVE_SSE=1.
import { ShapeStream, FetchError } from '@electric-sql/client'
import { createCollection } from '@tanstack/db'
import { electricCollectionOptions } from '@tanstack/electric-db-collection'
import readline from 'node:readline'

const out = (obj) =>
  process.stdout.write(JSON.stringify(obj, (_, v) => (typeof v === 'bigint' ? `${v}n` : v)) + '\n')

const url = process.env.PROBE_URL
const token = process.env.PROBE_TOKEN
const params = JSON.parse(process.env.PROBE_PARAMS || '{}')
const mode = process.env.PROBE_MODE || 'stream'
const warnings = []
for (const level of ['warn', 'error']) {
  const orig = console[level]
  console[level] = (...args) => {
    const text = args.map(String).join(' ')
    warnings.push(text)
    out({ kind: 'console', level, text })
    orig.apply(console, args)
  }
}

const onError = (error) => {
  out({
    kind: 'error',
    name: error?.name,
    status: error instanceof FetchError ? error.status : undefined,
    message: String(error?.message ?? error),
  })
  // Returning nothing stops the stream, as an app without retry logic would.
}

const shapeOptions = {
  url,
  params,
  headers: { Authorization: `Bearer ${token}` },
  onError,
  ...(process.env.PROBE_LIVE_SSE ? { liveSse: true } : {}),
}

let stream
let collection
if (mode === 'stream') {
  stream = new ShapeStream({
    ...shapeOptions,
    ...(process.env.PROBE_OFFSET ? { offset: process.env.PROBE_OFFSET } : {}),
    ...(process.env.PROBE_HANDLE ? { handle: process.env.PROBE_HANDLE } : {}),
  })
  stream.subscribe(
    (messages) =>
      out({
        kind: 'batch',
        offset: stream.lastOffset,
        handle: stream.shapeHandle,
        messages,
      }),
    onError,
  )
} else {
  collection = createCollection(
    electricCollectionOptions({
      id: `probe-${params.table ?? 'shape'}`,
      getKey: (row) => row.id,
      shapeOptions,
    }),
  )
  collection.subscribeChanges((changes) =>
    out({
      kind: 'changes',
      changes: changes.map((c) => ({ type: c.type, key: c.key, value: c.value })),
    }),
  )
  collection.preload().then(() => out({ kind: 'ready', size: collection.size }))
}

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', async (line) => {
  const cmd = JSON.parse(line)
  if (cmd.state) {
    const rows = collection ? [...collection.state.values()] : undefined
    out({ kind: 'state', rows, size: collection?.size, offset: stream?.lastOffset, handle: stream?.shapeHandle })
  } else if (cmd.await !== undefined) {
    const started = Date.now()
    try {
      await collection.utils.awaitTxId(cmd.await, cmd.timeout ?? 5000)
      out({ kind: 'awaited', txid: cmd.await, ok: true, ms: Date.now() - started })
    } catch (e) {
      out({ kind: 'awaited', txid: cmd.await, ok: false, error: e?.name, message: String(e?.message), ms: Date.now() - started })
    }
  } else if (cmd.exit) {
    out({ kind: 'bye', warnings })
    process.exit(0)
  }
})
rl.on('close', () => process.exit(0))
out({ kind: 'started', mode })
