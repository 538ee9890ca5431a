/**
 * Emitter is a small event emitter with the methods of Node's EventEmitter
 * that scuttlebutt users call: on, once, off, emit. Unlike Node's, an
 * `error` event without listeners is dropped, not thrown.
 */
export class Emitter {
  constructor () {
    /** @type {Map<string, Function[]>} */
    this._listeners = new Map()
  }

  on (event, fn) {
    const l = this._listeners.get(event)
    if (l) l.push(fn)
    else this._listeners.set(event, [fn])
    return this
  }

  once (event, fn) {
    const wrapper = (...args) => {
      this.off(event, wrapper)
      fn.apply(this, args)
    }
    wrapper.listener = fn
    return this.on(event, wrapper)
  }

  off (event, fn) {
    const l = this._listeners.get(event)
    if (!l) return this
    const i = l.findIndex((f) => f === fn || f.listener === fn)
    if (i >= 0) l.splice(i, 1)
    if (l.length === 0) this._listeners.delete(event)
    return this
  }

  emit (event, ...args) {
    const l = this._listeners.get(event)
    if (!l) return false
    for (const fn of [...l]) fn.apply(this, args)
    return true
  }

  listenerCount (event) {
    return this._listeners.get(event)?.length ?? 0
  }

  removeAllListeners (event) {
    if (event === undefined) this._listeners.clear()
    else this._listeners.delete(event)
    return this
  }
}

Emitter.prototype.addListener = Emitter.prototype.on
Emitter.prototype.removeListener = Emitter.prototype.off
