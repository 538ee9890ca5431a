// The test command: builds the server once from the repository, then runs
// the test files with node's test runner, the server's path in
// SIGNALCHANNEL_BIN (a path already set there is used as it is).
//
//	node test/run.mjs                 every test
//	node test/run.mjs --no-browser    all but the browser test
//	node test/run.mjs --browser-only  the browser test alone

import { spawn } from 'node:child_process'
import { readdirSync, rmSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { goBuild } from './helpers.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const args = process.argv.slice(2)
const noBrowser = args.includes('--no-browser')
const browserOnly = args.includes('--browser-only')

const files = readdirSync(here)
  .filter((f) => f.endsWith('.test.mjs'))
  .filter((f) => browserOnly ? f === 'browser.test.mjs' : !(noBrowser && f === 'browser.test.mjs'))
  .sort()
  .map((f) => path.join(here, f))

let bin = process.env.SIGNALCHANNEL_BIN
let builtDir = null
if (!bin) {
  const t0 = Date.now()
  bin = await goBuild('./cmd/signalchannel', 'signalchannel')
  builtDir = path.dirname(bin)
  console.log(`# built the server in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
}

const child = spawn(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=120000', ...files], {
  stdio: 'inherit',
  env: { ...process.env, SIGNALCHANNEL_BIN: bin }
})
const forward = (sig) => child.kill(sig)
process.on('SIGINT', forward)
process.on('SIGTERM', forward)
const code = await new Promise((resolve) => child.once('exit', (c, s) => resolve(c ?? (s ? 1 : 0))))
if (builtDir) rmSync(builtDir, { recursive: true, force: true })
process.exit(code)
