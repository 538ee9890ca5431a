'use strict'
// One npm scuttlebutt Model replicating over stdin and stdout, driven by
// commands, for the Go interoperability test of the scuttlebutt endpoint.
//
// stdin and stdout carry the scuttlebutt stream protocol: Model#createStream()
// piped both ways. The Go side bridges them to a server stream after the
// reply line.
//
// fd 3 carries commands, one JSON object per line:
//   {"op":"set","key":"k","value":v}   Model#set(k, v); null deletes
//   {"op":"dump","seq":n}               answers on fd 4 with one line
//                                       {"seq":n,"id":..,"synced":bool,"state":Model#toJSON()}
// The process exits when fd 3 ends.
const fs = require('fs')
const Model = require('scuttlebutt/model')

const model = new Model()
const stream = model.createStream()
let synced = false
stream.on('sync', () => { synced = true })
stream.on('error', err => {
  process.stderr.write('scuttlebutt stream error: ' + (err && err.message) + '\n')
})

process.stdin.setEncoding('utf8')
process.stdin.pipe(stream).pipe(process.stdout)

const answers = fs.createWriteStream(null, { fd: 4 })
const commands = fs.createReadStream(null, { fd: 3, encoding: 'utf8' })
let pending = ''
commands.on('data', chunk => {
  pending += chunk
  let i
  while ((i = pending.indexOf('\n')) >= 0) {
    const line = pending.slice(0, i)
    pending = pending.slice(i + 1)
    if (line.trim() !== '') handle(JSON.parse(line))
  }
})
commands.on('end', () => process.exit(0))

function handle (cmd) {
  switch (cmd.op) {
    case 'set':
      model.set(cmd.key, cmd.value)
      break
    case 'dump':
      answers.write(JSON.stringify({ seq: cmd.seq, id: model.id, synced, state: model.toJSON() }) + '\n')
      break
    default:
      process.stderr.write('unknown command ' + JSON.stringify(cmd) + '\n')
  }
}
