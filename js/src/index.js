// signalchannel: the JavaScript client of a signalchannel server, for
// browsers and Node 20+. See README.md.

export { connect, Channel, SUBPROTOCOL, MAX_HEADER_BYTES } from './channel.js'
export { SignalChannelError } from './errors.js'
export { reconnect, Client, ReconnectingEcho } from './client.js'
export { Echo, DEFAULT_MAX_FRAME } from './echo.js'
export { Relay } from './relay.js'
export { Model, createId } from './model.js'
export { Room, Request, Call, MAX_MESSAGE_BYTES } from './room.js'
export { Connection, DEFAULT_DIRECT_TIMEOUT, DEFAULT_DISCONNECT_GRACE, CLOSE_LINGER } from './connection.js'
export { Session, Stream, INITIAL_WINDOW } from './yamux.js'
