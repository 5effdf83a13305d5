// N live subscribers (the real @electric-sql/client ShapeStream) on one user's
// messages shape. Prints, per change received, the delay between the write's
// send time (carried in the message's content as epoch ms) and the callback.
// Env: URL, TOKEN, N, SESSION. Prints "ready" once every stream is up to date.
import { createRequire } from 'node:module'
import path from 'node:path'
const nodeDir = process.env.NODE_DIR
const require = createRequire(path.join(nodeDir, 'package.json'))
const { ShapeStream } = require('@electric-sql/client')

const n = Number(process.env.N)
let ready = 0
const t0 = performance.timeOrigin + performance.now()
for (let i = 0; i < n; i++) {
  const stream = new ShapeStream({
    url: process.env.URL,
    params: { table: 'messages', session_id: process.env.SESSION },
    headers: { Authorization: `Bearer ${process.env.TOKEN}` },
  })
  let first = true
  stream.subscribe((messages) => {
    const now = performance.timeOrigin + performance.now()
    for (const m of messages) {
      if (first && m.headers?.control === 'up-to-date') {
        first = false
        ready += 1
        if (ready === n) console.log(JSON.stringify({ ready: true, ms: now - t0 }))
      }
      if (!first && m.headers?.operation === 'insert') {
        const sent = Number(m.value.content)
        if (sent > 0) console.log(JSON.stringify({ lag: now - sent }))
      }
    }
  })
}
