package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signalchannel/signalchannel/channel"
	"github.com/signalchannel/signalchannel/model"
)

// Errors of Replica.
var (
	// ErrReplicaEnded is a Replica's Err when the server ended the stream
	// (half-closed it) without an error object, as it does when shutting
	// down.
	ErrReplicaEnded = errors.New("channel: the server ended the replica's stream")
)

// DefaultReplicaCloseTimeout is how long Replica.Close waits for the server
// to end its side before it resets the stream.
const DefaultReplicaCloseTimeout = 5 * time.Second

// ReplicateOptions are the optional arguments of Session.Replicate. The
// zero value is ready to use.
type ReplicateOptions struct {
	// Ephemeral asks the server to delete the keys this replica wrote (those
	// whose source is the Model's id) when the stream closes, so that
	// presence ends at disconnect rather than at expiry. Default false.
	Ephemeral bool
	// QueueBytes bounds the updates waiting to be written to the server; a
	// Replica whose queue overflows ends with model.ErrSlowPeer.
	// Default model.DefaultQueueBytes (1 MiB).
	QueueBytes int
	// CloseTimeout bounds how long Close waits for the server to end its
	// side of the stream before resetting it. Default 5s.
	CloseTimeout time.Duration
}

// Replica keeps a Model in sync with a namespace of the scuttlebutt
// endpoint (PROTOCOL.md section 4): the server's records are applied to the
// Model, and the Model's writes (Set, Delete) go to the server and, through
// it, to every other member. It replicates in a goroutine of its own until
// Close, the session's end, or an error; Done and Err tell which.
//
// Its methods may be called from any goroutine. The Model stays the
// caller's: Close does not close it.
type Replica struct {
	st           *Stream
	w            *replicaWriter
	m            *model.Model
	namespace    string
	serverID     string
	maxAge       time.Duration
	closeTimeout time.Duration
	cancel       context.CancelFunc

	synced    chan struct{}
	syncOnce  sync.Once
	done      chan struct{}
	err       error // set before done is closed
	closing   atomic.Bool
	closeOnce sync.Once
}

// Replicate joins namespace on the scuttlebutt endpoint and starts keeping
// m in sync with it. It blocks until the server accepts the stream or ctx
// ends; ctx bounds only that: the replication goes on until Close or the
// session's end. A failure reply (`limit` at the cap on namespaces, say) is
// returned as an *Error.
//
// Records older than the server's maxAge (Replica.MaxAge) are ignored by
// the server; a Model whose MaxAge is longer keeps them longer. Give m
// Options.SilentExpiry so that expiry is announced once, by the server.
func (s *Session) Replicate(ctx context.Context, namespace string, m *model.Model, opts ReplicateOptions) (*Replica, error) {
	st, reply, err := s.Open(ctx, channel.Header{Endpoint: channel.EndpointScuttlebutt, Namespace: namespace, Ephemeral: opts.Ephemeral})
	if err != nil {
		return nil, err
	}
	if reply.ID == "" || reply.MaxAge <= 0 {
		st.Reset()
		st.Close()
		return nil, fmt.Errorf("%w: scuttlebutt reply without \"id\" and \"maxAge\"", channel.ErrBadReply)
	}
	if opts.CloseTimeout <= 0 {
		opts.CloseTimeout = DefaultReplicaCloseTimeout
	}
	rctx, cancel := context.WithCancel(context.Background())
	r := &Replica{
		st:           st,
		w:            &replicaWriter{st: st},
		m:            m,
		namespace:    namespace,
		serverID:     reply.ID,
		maxAge:       time.Duration(reply.MaxAge) * time.Millisecond,
		closeTimeout: opts.CloseTimeout,
		cancel:       cancel,
		synced:       make(chan struct{}),
		done:         make(chan struct{}),
	}
	go r.run(rctx, opts.QueueBytes)
	return r, nil
}

func (r *Replica) run(ctx context.Context, queueBytes int) {
	err := r.m.Replicate(ctx, r.st, r.w, model.ReplicateOptions{
		QueueBytes: queueBytes,
		OnSync:     func() { r.syncOnce.Do(func() { close(r.synced) }) },
	})
	var pe *model.ProtocolError
	switch {
	case err == nil:
		// The server ended its side: after our FIN when closing.
		if !r.closing.Load() {
			err = ErrReplicaEnded
		}
	case errors.As(err, &pe) && pe.Remote:
		err = &channel.Error{Code: channel.Code(pe.Code), Message: pe.Message}
	case errors.As(err, &pe):
		// The server sent a line this side refused; the error object
		// was written back.
		err = fmt.Errorf("channel: replicate %q: %w", r.namespace, err)
	default:
		// Close gave up waiting, or the stream or session broke.
		r.st.Reset()
		err = fmt.Errorf("channel: replicate %q: %w", r.namespace, err)
	}
	if r.closing.Load() {
		err = nil
	}
	r.st.Close()
	r.cancel()
	r.err = err
	close(r.done)
}

// Model returns the replicated Model.
func (r *Replica) Model() *model.Model { return r.m }

// Namespace returns the namespace joined.
func (r *Replica) Namespace() string { return r.namespace }

// ServerID returns the id of the server's replica of the namespace, the
// source of the deletions it issues on expiry and for ephemeral streams.
func (r *Replica) ServerID() string { return r.serverID }

// MaxAge returns the namespace's maxAge announced by the server.
func (r *Replica) MaxAge() time.Duration { return r.maxAge }

// Stream returns the underlying stream.
func (r *Replica) Stream() *Stream { return r.st }

// Synced is closed when the server's "SYNC" has arrived: its records, as
// they were when this stream joined, have been applied to the Model.
func (r *Replica) Synced() <-chan struct{} { return r.synced }

// WaitSync blocks until the server's records have been applied (Synced), the
// Replica ends (its Err, or ErrReplicaEnded after Close), or ctx ends.
func (r *Replica) WaitSync(ctx context.Context) error {
	select {
	case <-r.synced:
		return nil
	default:
	}
	select {
	case <-r.synced:
		return nil
	case <-r.done:
		if r.err != nil {
			return r.err
		}
		return ErrReplicaEnded
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is closed when the replication has stopped.
func (r *Replica) Done() <-chan struct{} { return r.done }

// Err returns why the replication stopped, once Done is closed: nil after
// Close; an *Error when the server sent an error object (code `limit` for a
// key, value or line too long or too many keys, `bad_line`); ErrReplicaEnded
// when the server ended the stream; otherwise the transport's error, such
// as the session's end. It returns nil while running.
func (r *Replica) Err() error {
	select {
	case <-r.done:
		return r.err
	default:
		return nil
	}
}

// Close leaves the namespace gracefully: it half-closes the stream, so that
// the server ends the membership (deleting the Model's keys when the stream
// is ephemeral), and waits for the server to end its side, at most the
// CloseTimeout, then resets the stream. Writes to the Model after Close stay
// local. Close may be called more than once and from any goroutine.
func (r *Replica) Close() error {
	r.closeOnce.Do(func() {
		r.closing.Store(true)
		r.w.closeWrite(time.Now().Add(r.closeTimeout))
		t := time.NewTimer(r.closeTimeout)
		defer t.Stop()
		select {
		case <-r.done:
		case <-t.C:
			r.cancel()
		}
	})
	<-r.done
	return nil
}

// replicaWriter is the Replica's writing side: after closeWrite, it drops
// what the Model still writes, so that Replicate goes on reading until the
// server ends its side.
type replicaWriter struct {
	st     *Stream
	closed atomic.Bool
	mu     sync.Mutex // one Write at a time; closeWrite waits for it
}

func (w *replicaWriter) Write(p []byte) (int, error) {
	if w.closed.Load() {
		return len(p), nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() {
		return len(p), nil
	}
	return w.st.Write(p)
}

// SetWriteDeadline lets Replicate interrupt a pending Write.
func (w *replicaWriter) SetWriteDeadline(t time.Time) error { return w.st.SetWriteDeadline(t) }

// closeWrite stops writing and half-closes the stream, after the pending
// Write, which is given until deadline.
func (w *replicaWriter) closeWrite(deadline time.Time) {
	w.closed.Store(true)
	w.st.SetWriteDeadline(deadline)
	w.mu.Lock()
	w.st.CloseWrite()
	w.mu.Unlock()
}

// Watch returns a KeyWatcher of the Replica's Model: model.WatchKeys(r.Model(), 0).
func (r *Replica) Watch() *model.KeyWatcher { return model.WatchKeys(r.m, 0) }
