// The TypeScript declarations compile, and typed usage of the API checks.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const here = path.dirname(fileURLToPath(import.meta.url))

test('index.d.ts compiles with strict typed usage', async () => {
  const tsc = require.resolve('typescript/bin/tsc')
  const { code, out } = await new Promise((resolve) => {
    execFile(process.execPath, [tsc, '-p', path.join(here, 'types', 'tsconfig.json')], { timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? err.code ?? 1 : 0, out: stdout + stderr })
    })
  })
  assert.equal(code, 0, out)
})
