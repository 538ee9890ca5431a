// Every JavaScript snippet of README.md and js/README.md that imports the
// client is a complete program, run here with Node against a real server,
// so that the docs cannot drift from the code.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { startServer, repoRoot } from './helpers.mjs'

const execFileP = promisify(execFile)
let srv
let dir

before(async () => {
  srv = await startServer()
  // A directory where 'signalchannel' is this checkout's client, as an app
  // that installed it sees it.
  dir = mkdtempSync(path.join(tmpdir(), 'signalchannel-readme-'))
  mkdirSync(path.join(dir, 'node_modules'))
  symlinkSync(path.join(repoRoot, 'js'), path.join(dir, 'node_modules', 'signalchannel'))
  symlinkSync(path.join(repoRoot, 'js', 'node_modules', 'ws'), path.join(dir, 'node_modules', 'ws'))
})

after(async () => {
  await srv?.stop()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

/** programs returns the js code blocks of a Markdown file. */
function programs (file) {
  const text = readFileSync(path.join(repoRoot, file), 'utf8')
  return [...text.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1])
}

for (const file of ['README.md', 'js/README.md']) {
  test(`the JavaScript snippets of ${file} are programs that run`, { timeout: 120_000 }, async () => {
    const blocks = programs(file)
    assert.ok(blocks.length > 0, `no js block in ${file}`)
    for (const [i, src] of blocks.entries()) {
      assert.match(src, /from 'signalchannel'/, `block ${i + 1} of ${file} is not a program (it imports nothing):\n${src}`)
      const f = path.join(dir, `${file.replace(/\W/g, '-')}-${i + 1}.mjs`)
      writeFileSync(f, src)
      try {
        await execFileP(process.execPath, [f], { cwd: dir, timeout: 60_000, env: { ...process.env, SIGNALCHANNEL_URL: srv.url } })
      } catch (e) {
        assert.fail(`block ${i + 1} of ${file} failed: ${e.message}\n${e.stdout}\n${e.stderr}\n--- the program:\n${src}`)
      }
    }
  })
}
