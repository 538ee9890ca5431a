package model

import (
	"bytes"
	"container/heap"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Model is one replica of an expiring scuttlebutt model. Create it with New
// and stop it with Close. All methods are safe for concurrent use.
//
// json.RawMessage values the Model returns (from Get, Snapshot, History and
// in Updates) share memory with it and must not be modified.
type Model struct {
	opts      Options
	id        string
	maxAgeMs  float64
	maxSkewMs float64

	mu        sync.Mutex
	records   map[string]*record
	expiry    recordHeap // every record, oldest first
	clock     map[string]float64
	writers   map[string]keyOwner // for each clock entry, whose keys its source wrote
	live      int                 // records whose value is not null
	lastLocal float64             // timestamp of the last local write
	subs      map[subscriber]struct{}
	// waiting holds ReplicateInline streams that receive no updates (before
	// the peer's digest, or writing what was queued after the peer's EOF)
	// but must hear of Close: made when first needed.
	waiting map[subscriber]struct{}
	closed  bool

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// record is the current update of one key.
type record struct {
	u   Update
	idx int // index in Model.expiry
}

// event is a change handed to subscribers: the update applied and the
// Replicate stream it came from, nil for a local change.
type event struct {
	u      Update
	origin *stream
}

// subscriber receives changes under the Model's lock, in the order they are
// applied. deliver must not block; it returns false to be removed. close is
// called once when the Model closes.
type subscriber interface {
	deliver(ev event) bool
	close()
}

// New returns a Model and starts its sweeper goroutine, which runs until
// Close. It panics if opts.Validate fails: check options from outside the
// program with Validate first.
func New(opts Options) *Model {
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	opts = opts.withDefaults()
	if opts.ID == "" {
		opts.ID = newID()
	}
	m := &Model{
		opts:      opts,
		id:        opts.ID,
		maxAgeMs:  durationMs(opts.MaxAge),
		maxSkewMs: durationMs(opts.MaxSkew),
		records:   make(map[string]*record),
		clock:     make(map[string]float64),
		writers:   make(map[string]keyOwner),
		subs:      make(map[subscriber]struct{}),
		done:      make(chan struct{}),
	}
	m.wg.Add(1)
	go m.sweeper()
	return m
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

func durationMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// timeMs returns t in milliseconds since the Unix epoch, with microseconds.
func timeMs(t time.Time) float64 { return float64(t.UnixMicro()) / 1000 }

// ID returns the replica id, the source of local writes.
func (m *Model) ID() string { return m.id }

// Options returns the options in force, defaults filled in.
func (m *Model) Options() Options { return m.opts }

// Close stops the sweeper and waits for it, ends every Subscription (Err
// reports ErrClosed) and makes every Replicate on the Model return ErrClosed.
// Later writes fail with ErrClosed; reads go on working. Close may be called
// more than once and from any goroutine.
func (m *Model) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		for s := range m.subs {
			s.close()
		}
		for s := range m.waiting {
			s.close()
		}
		m.subs, m.waiting = nil, nil
		m.mu.Unlock()
		close(m.done)
		m.wg.Wait()
	})
	return nil
}

// Set writes value under key as a local update with the Model's id as source
// and a timestamp greater than that of any earlier local write. value is a
// json.RawMessage written as is (compacted), or anything else encoded with
// encoding/json (without HTML escaping, as JSON.stringify); nil deletes the
// key. Set fails with a *ProtocolError when the key or value breaks a limit
// or the Model already holds MaxKeys live keys, and with ErrClosed after
// Close. Subscribers and streams receive the update before Set returns.
func (m *Model) Set(key string, value any) error {
	raw, err := encodeValue(value)
	if err != nil {
		return err
	}
	_, err = m.apply(Update{Key: key, Value: raw, Source: m.id}, nil, true)
	return err
}

// Delete deletes key as a local update: Set(key, nil).
func (m *Model) Delete(key string) error { return m.Set(key, nil) }

func encodeValue(value any) (json.RawMessage, error) {
	switch v := value.(type) {
	case nil:
		return nullJSON, nil
	case json.RawMessage:
		return v, nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(value); err != nil {
		return nil, badLine(ErrInvalidJSON, "value cannot be encoded as JSON: "+err.Error())
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// Apply applies a remote update and reports whether it became the current
// value of its key. A well-formed update that is stale (its timestamp is not
// greater than the clock entry of its source, is MaxAge old or older, or is
// more than MaxSkew ahead) is ignored: Apply returns false and no error. An
// update that is fresh but loses to the current value of its key advances the
// clock of its source and returns false. An update that breaks a limit, or
// whose Key or Source is not UTF-8 or whose Value or Sig is not JSON, changes
// nothing and returns a *ProtocolError. Subscribers and streams receive an
// applied update before Apply returns.
func (m *Model) Apply(u Update) (applied bool, err error) {
	return m.apply(u, nil, false)
}

// check validates u for storage and compacts its JSON, copying it unless
// owned (the caller's memory is never kept); it returns a *ProtocolError
// naming the limit or the fault.
func (m *Model) check(u *Update, owned bool) error {
	if !utf8.ValidString(u.Key) || !utf8.ValidString(u.Source) {
		return badLine(ErrInvalidKey, "key and source must be UTF-8")
	}
	if len(u.Key) > m.opts.MaxKeyBytes {
		return protoErr(CodeLimit, ErrKeyTooLong, "key longer than %d bytes", m.opts.MaxKeyBytes)
	}
	if isNull(u.Value) {
		u.Value = nullJSON
	} else {
		if !json.Valid(u.Value) || !utf8.Valid(u.Value) {
			return badLine(ErrInvalidJSON, "value is not JSON")
		}
		u.Value = compact(u.Value)
		if !owned {
			u.Value = bytes.Clone(u.Value)
		}
	}
	if len(u.Value) > m.opts.MaxValueBytes {
		return protoErr(CodeLimit, ErrValueTooLarge, "value larger than %d bytes", m.opts.MaxValueBytes)
	}
	if len(u.Sig) > 0 {
		if !json.Valid(u.Sig) || !utf8.Valid(u.Sig) {
			return badLine(ErrInvalidJSON, "signature is not JSON")
		}
		u.Sig = compact(u.Sig)
		if !owned {
			u.Sig = bytes.Clone(u.Sig)
		}
	}
	if math.IsNaN(u.TS) || math.IsInf(u.TS, 0) {
		return badLine(ErrInvalidMessage, "timestamp must be a finite number")
	}
	if updateLineLen(u) > m.opts.MaxLineBytes {
		return protoErr(CodeLimit, ErrLineTooLong, "line longer than %d bytes", m.opts.MaxLineBytes)
	}
	return nil
}

// apply checks u and applies it under the lock. A local write (Set, Delete)
// is stamped with the next local timestamp, greater than that of the key's
// current record so that it always takes effect. origin is the stream u came
// from, if any.
func (m *Model) apply(u Update, origin *stream, local bool) (bool, error) {
	if local {
		u.TS = 0 // a placeholder until stamped
	}
	// Lines parsed by a stream are fresh copies; the caller's are not.
	if err := m.check(&u, origin != nil); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, ErrClosed
	}
	now := m.opts.Now()
	if !local {
		nowMs := timeMs(now)
		if u.TS <= nowMs-m.maxAgeMs || u.TS > nowMs+m.maxSkewMs {
			return false, nil
		}
		if last, ok := m.clock[u.Source]; ok && u.TS <= last {
			return false, nil
		}
	}
	// Only a fresh update is judged: a peer sends back, once, the updates
	// of others it received (as npm scuttlebutt does), and those are
	// stale here.
	if origin != nil && origin.opts.Owner != "" {
		if err := m.checkOwner(&u, origin.opts.Owner); err != nil {
			return false, err
		}
	}
	cur := m.records[u.Key]
	wins := local || cur == nil || u.wins(&cur.u)
	if wins && !u.Deleted() && (cur == nil || cur.u.Deleted()) && m.live >= m.opts.MaxKeys {
		// Expired keys count until swept: sweep, then look again.
		m.sweepLocked(now)
		cur = m.records[u.Key]
		wins = local || cur == nil || u.wins(&cur.u)
		if wins && (cur == nil || cur.u.Deleted()) && m.live >= m.opts.MaxKeys {
			return false, protoErr(CodeLimit, ErrTooManyKeys, "more than %d keys", m.opts.MaxKeys)
		}
	}
	if local {
		u.TS = m.localTS(now, cur)
		if updateLineLen(&u) > m.opts.MaxLineBytes {
			return false, protoErr(CodeLimit, ErrLineTooLong, "line longer than %d bytes", m.opts.MaxLineBytes)
		}
	}
	m.advance(&u)
	if !wins {
		return false, nil
	}
	m.commit(u, cur, origin)
	return true, nil
}

// keyOwner is whose keys a source has written: the owner of the first,
// until a key of another owner makes it many.
type keyOwner struct {
	id   string
	many bool
}

// ownerOf returns the peer id that owns key: the key up to its first "/".
func ownerOf(key string) string {
	if i := strings.IndexByte(key, '/'); i >= 0 {
		return key[:i]
	}
	return key
}

// owns reports whether the peer id owns key: key is id, or begins with id
// and "/".
func owns(id, key string) bool {
	return id != "" && strings.HasPrefix(key, id) && (len(key) == len(id) || key[len(id)] == '/')
}

// checkOwner applies ReplicateOptions.Owner to u. Called with m.mu held.
func (m *Model) checkOwner(u *Update, owner string) error {
	if !owns(owner, u.Key) {
		return protoErr(CodeForbidden, ErrForbidden, "key %s is not yours: %s may write only the key %s and keys that begin with %s",
			clip(u.Key), clip(owner), clip(owner), clip(owner+"/"))
	}
	if u.Source == m.id {
		return protoErr(CodeForbidden, ErrForbidden, "source %s is the server's replica id", clip(u.Source))
	}
	if w, ok := m.writers[u.Source]; ok && (w.many || w.id != owner) {
		return protoErr(CodeForbidden, ErrForbidden, "source %s has written another peer's keys: use a replica id of your own", clip(u.Source))
	}
	return nil
}

// advance moves the clock of u's source to u's timestamp and notes whose
// key the source wrote. Called with m.mu held.
func (m *Model) advance(u *Update) {
	m.clock[u.Source] = max(m.clock[u.Source], u.TS)
	o := ownerOf(u.Key)
	switch w, ok := m.writers[u.Source]; {
	case !ok:
		m.writers[u.Source] = keyOwner{id: o}
	case !w.many && w.id != o:
		m.writers[u.Source] = keyOwner{many: true}
	}
}

// clip shortens a peer-supplied string for an error message, quoted.
func clip(s string) string {
	if len(s) > 64 {
		i := 64
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		s = s[:i] + "..."
	}
	return strconv.Quote(s)
}

// localTS returns the timestamp of a local write at now: now in whole
// milliseconds, as JavaScript's Date.now, but greater than that of every
// earlier write from this id and than that of cur, the record the write
// replaces (which may come from a clock that runs ahead). Called with m.mu
// held.
func (m *Model) localTS(now time.Time, cur *record) float64 {
	ts := float64(now.UnixMilli())
	last := max(m.lastLocal, m.clock[m.id])
	if cur != nil {
		last = max(last, cur.u.TS)
	}
	if ts <= last {
		ts = last + 0.001
		if ts <= last {
			ts = math.Nextafter(last, math.Inf(1))
		}
	}
	m.lastLocal = ts
	return ts
}

// commit stores u, which wins over cur (nil when the key has no record), and
// hands it to subscribers. Called with m.mu held.
func (m *Model) commit(u Update, cur *record, origin *stream) {
	if u.Source == m.id {
		m.lastLocal = max(m.lastLocal, u.TS)
	}
	m.advance(&u)
	if cur != nil && !cur.u.Deleted() {
		m.live--
	}
	if !u.Deleted() {
		m.live++
	}
	if cur == nil {
		rec := &record{u: u}
		heap.Push(&m.expiry, rec)
		m.records[u.Key] = rec
	} else {
		cur.u = u
		heap.Fix(&m.expiry, cur.idx)
	}
	ev := event{u: u, origin: origin}
	for s := range m.subs {
		if !s.deliver(ev) {
			delete(m.subs, s)
		}
	}
}

// localDelete issues a deletion of key with the Model's id. Called with m.mu
// held.
func (m *Model) localDelete(cur *record, now time.Time) {
	u := Update{Key: cur.u.Key, Value: nullJSON, Source: m.id}
	u.TS = m.localTS(now, cur)
	m.commit(u, cur, nil)
}

// expired reports whether an update of timestamp ts is expired at nowMs.
func (m *Model) expired(ts, nowMs float64) bool { return ts <= nowMs-m.maxAgeMs }

// Get returns the value of key and true, or nil and false when the key is
// absent, deleted or expired.
func (m *Model) Get(key string) (json.RawMessage, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec := m.records[key]
	if rec == nil || rec.u.Deleted() || m.expired(rec.u.TS, timeMs(m.opts.Now())) {
		return nil, false
	}
	return rec.u.Value, true
}

// Keys returns the live keys (not deleted, not expired) in order.
func (m *Model) Keys() []string {
	m.mu.Lock()
	nowMs := timeMs(m.opts.Now())
	keys := make([]string, 0, m.live)
	for k, rec := range m.records {
		if !rec.u.Deleted() && !m.expired(rec.u.TS, nowMs) {
			keys = append(keys, k)
		}
	}
	m.mu.Unlock()
	slices.Sort(keys)
	return keys
}

// Snapshot returns the live keys (not deleted, not expired) and their values.
func (m *Model) Snapshot() map[string]json.RawMessage {
	m.mu.Lock()
	defer m.mu.Unlock()
	nowMs := timeMs(m.opts.Now())
	snap := make(map[string]json.RawMessage, m.live)
	for k, rec := range m.records {
		if !rec.u.Deleted() && !m.expired(rec.u.TS, nowMs) {
			snap[k] = rec.u.Value
		}
	}
	return snap
}

// Clock returns a copy of the clock: the greatest timestamp seen from each
// source (entries older than MaxAge are dropped by the sweeper).
func (m *Model) Clock() map[string]float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.clock)
}

// Digest returns the Model's digest: its id and a copy of its clock.
func (m *Model) Digest() Digest {
	return Digest{ID: m.id, Clock: m.Clock()}
}

// History returns every record, deletions included, whose timestamp is
// greater than clock's entry for its source (every record for a source clock
// lacks), sorted by timestamp and then source across all sources: the
// updates a peer with that clock is missing. Expired records are never
// included. A nil clock selects every record.
func (m *Model) History(clock map[string]float64) []Update {
	m.mu.Lock()
	h := m.historyLocked(clock)
	m.mu.Unlock()
	sortHistory(h)
	return h
}

func (m *Model) historyLocked(clock map[string]float64) []Update {
	nowMs := timeMs(m.opts.Now())
	h := make([]Update, 0, len(m.records))
	for _, rec := range m.records {
		if m.expired(rec.u.TS, nowMs) {
			continue
		}
		if seen, ok := clock[rec.u.Source]; ok && rec.u.TS <= seen {
			continue
		}
		h = append(h, rec.u)
	}
	return h
}

func sortHistory(h []Update) {
	slices.SortFunc(h, func(a, b Update) int { return a.before(&b) })
}

// DeleteSource deletes, as local updates with the Model's id, every live key
// whose current value came from source, and returns how many it deleted.
// The server calls it when an ephemeral stream closes, with the id the
// stream's digest carried. It returns 0 after Close.
func (m *Model) DeleteSource(source string) int { return m.DeleteSourceOf(source, "") }

// DeleteSourceOf is DeleteSource limited to the keys the peer id owner
// owns (see ReplicateOptions.Owner); an empty owner limits nothing. The
// server calls it when an ephemeral stream with an owner closes, so that a
// stream that names another peer's source in its digest deletes none of
// that peer's keys.
func (m *Model) DeleteSourceOf(source, owner string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0
	}
	now := m.opts.Now()
	nowMs := timeMs(now)
	var keys []string
	for k, rec := range m.records {
		if rec.u.Source == source && !rec.u.Deleted() && !m.expired(rec.u.TS, nowMs) && (owner == "" || owns(owner, k)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		m.localDelete(m.records[k], now)
	}
	return len(keys)
}

// Stats are counts describing a Model at one moment.
type Stats struct {
	Live        int // live keys, expired ones not yet swept included
	Records     int // records, deletions included
	Sources     int // entries in the clock
	Subscribers int // Subscriptions and Replicate streams receiving updates
}

// Stats returns the Model's counts. A Model whose Records is 0 holds nothing
// a reconnecting peer could need.
func (m *Model) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Stats{Live: m.live, Records: len(m.records), Sources: len(m.clock), Subscribers: len(m.subs)}
}
