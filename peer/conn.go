package peer

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/signalchannel/signalchannel/channel/client"
)

// Path is how a connection's data travels.
type Path string

// The paths of a connection.
const (
	// PathNone: no data path yet.
	PathNone Path = ""
	// PathDirect: a WebRTC data channel over a direct ICE path.
	PathDirect Path = "direct"
	// PathTURN: a WebRTC data channel through a TURN server.
	PathTURN Path = "turn"
	// PathRelay: the signal server's relay, when no ICE path formed.
	PathRelay Path = "relay"
)

// TypePath is the message by which the impolite side switches a
// connection's data to the relay (PROTOCOL.md section 10).
const TypePath = "path"

// Defaults of ConnOptions.
const (
	DefaultDirectTimeout   = 10 * time.Second
	DefaultDisconnectGrace = 5 * time.Second
)

// ConnOptions configure Connect.
type ConnOptions struct {
	// ICEServers are the STUN and TURN servers of the peer connection.
	// Default, with ICEServersFunc unset too: those the server hands out
	// (client.Session.ICEServers), renewed for every ICE restart.
	ICEServers []webrtc.ICEServer
	// ICETransportPolicy, set to webrtc.ICETransportPolicyRelay, keeps
	// ICE to TURN candidates. Default all.
	ICETransportPolicy webrtc.ICETransportPolicy
	// SettingEngine, if set, tunes the peer connection (network types,
	// interfaces, loopback candidates); Connect uses a copy that detaches
	// data channels, so one engine may serve many connections. Default a
	// SettingEngine of pion's defaults.
	SettingEngine *webrtc.SettingEngine
	// DirectTimeout is how long the connection waits for its WebRTC data
	// channel before its data takes the relay. Default 10s.
	DirectTimeout time.Duration
	// ForceRelay takes the relay at once, without WebRTC data.
	ForceRelay bool
	// DisconnectGrace is how long ICE may stay disconnected before the
	// connection heals itself as if it had failed: an ICE restart, then
	// the relay. Default 5s.
	DisconnectGrace time.Duration
	// ICEServersFunc, if set, gives the ICE servers of every ICE restart,
	// so that a restart uses current TURN credentials. Default: keep
	// ICEServers.
	ICEServersFunc func(ctx context.Context) ([]webrtc.ICEServer, error)
	// OnPath, if set, is told of each path the data takes.
	OnPath func(Path)
	// Logger receives debug logs. Default none.
	Logger *slog.Logger
}

// Conn is a connection between two members over an accepted call: a
// WebRTC peer connection set up with perfect negotiation over the call,
// whose data channel is a net.Conn, or the relay when no ICE path forms
// in time. Both sides of the call call Connect.
//
// Read and Write may be called from two goroutines at once.
type Conn struct {
	call *Call
	pc   *webrtc.PeerConnection
	dc   *webrtc.DataChannel
	opts ConnOptions
	log  *slog.Logger

	ctx    context.Context // ends with the connection
	cancel context.CancelFunc
	wg     sync.WaitGroup

	negMu       sync.Mutex // perfect negotiation's state
	makingOffer bool
	ignoreOffer bool

	// Candidates wait for their description: gathering starts within
	// SetLocalDescription, before the description is sent, and a
	// candidate that reaches the other side first is lost to it (its ICE
	// then finds the path a second later, if at all).
	candMu      sync.Mutex
	descSent    bool
	localCands  []candidateMsg
	remoteCands []webrtc.ICECandidateInit // before the remote description; the signals goroutine's

	st *stream // the bytes, over the current path

	mu       sync.Mutex
	ready    chan struct{} // closed once the first path is up
	isReady  bool
	relaying bool        // the relay is the path, or is being paired
	grace    *time.Timer // ICE disconnected: taken for failed when it fires
	iceTimer *time.Timer // ICE failed: takes the relay when ICE does not come back
	restarts int         // ICE restarts tried since the last connection
	err      error       // why the connection ended

	rdl, wdl *deadline
}

// Connect sets up the connection of an accepted call and returns it once
// its data can flow: over the WebRTC data channel, or over the relay when
// none opened within DirectTimeout. It returns ctx's error if ctx ends
// first. The call carries the connection's signalling from then on; Close
// ends both.
func Connect(ctx context.Context, call *Call, opts ConnOptions) (*Conn, error) {
	if opts.DirectTimeout <= 0 {
		opts.DirectTimeout = DefaultDirectTimeout
	}
	if opts.DisconnectGrace <= 0 {
		opts.DisconnectGrace = DefaultDisconnectGrace
	}

	c := &Conn{call: call, opts: opts, log: opts.Logger, ready: make(chan struct{}), st: newStream()}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.rdl, c.wdl = newDeadline(), newDeadline()
	if len(opts.ICEServers) == 0 && opts.ICEServersFunc == nil && !opts.ForceRelay {
		servers, err := sessionICE(ctx, call.room.sess)
		if err != nil {
			c.cancel()
			return nil, err
		}
		c.opts.ICEServers = servers
		c.opts.ICEServersFunc = func(ctx context.Context) ([]webrtc.ICEServer, error) { return sessionICE(ctx, call.room.sess) }
	}
	if !opts.ForceRelay {
		if err := c.startWebRTC(); err != nil {
			c.cancel()
			return nil, err
		}
	}
	c.wg.Add(1)
	go c.signals()
	if opts.ForceRelay {
		c.toRelay(true)
	} else {
		c.wg.Add(1)
		go c.fallback()
	}
	select {
	case <-c.ready:
		return c, nil
	case <-ctx.Done():
		c.Close()
		return nil, ctx.Err()
	case <-c.ctx.Done():
		err := c.endErr()
		c.Close()
		return nil, err
	}
}

// startWebRTC builds the peer connection and its negotiated data channel.
func (c *Conn) startWebRTC() error {
	// A copy: the caller's engine may serve several connections at once.
	var se webrtc.SettingEngine
	if c.opts.SettingEngine != nil {
		se = *c.opts.SettingEngine
	}
	se.DetachDataChannels()
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{ICEServers: c.opts.ICEServers, ICETransportPolicy: c.opts.ICETransportPolicy})
	if err != nil {
		return fmt.Errorf("peer: peer connection: %w", err)
	}
	c.pc = pc
	negotiated, id := true, uint16(0)
	dc, err := pc.CreateDataChannel("data", &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id})
	if err != nil {
		pc.Close()
		return fmt.Errorf("peer: data channel: %w", err)
	}
	c.dc = dc
	dc.SetBufferedAmountLowThreshold(256 << 10)
	dc.OnOpen(func() {
		rwc, err := dc.DetachWithDeadline()
		if err != nil {
			c.log.Debug("data channel detach", "err", err)
			return
		}
		c.mu.Lock()
		relaying := c.relaying
		c.mu.Unlock()
		if relaying {
			rwc.Close()
			return
		}
		c.usePath(newPath(c.iceKind(), rwc, nil))
	})
	pc.OnNegotiationNeeded(c.negotiate)
	pc.OnICEConnectionStateChange(c.iceState)
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		var init *webrtc.ICECandidateInit
		if cand != nil {
			ci := cand.ToJSON()
			init = &ci
			c.log.Debug("local candidate", "candidate", ci.Candidate)
		}
		m := candidateMsg{Type: TypeCandidate, Candidate: init}
		c.candMu.Lock()
		defer c.candMu.Unlock()
		if !c.descSent {
			c.localCands = append(c.localCands, m)
			return
		}
		c.send(m)
	})
	return nil
}

// sessionICE returns the ICE servers the server hands sess, as pion's.
func sessionICE(ctx context.Context, sess *client.Session) ([]webrtc.ICEServer, error) {
	servers, err := sess.ICEServers(ctx)
	if err != nil || servers == nil {
		return nil, err
	}
	out := make([]webrtc.ICEServer, 0, len(servers.ICEServers))
	for _, s := range servers.ICEServers {
		out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out, nil
}

// iceKind says whether the selected ICE pair goes through TURN.
func (c *Conn) iceKind() Path {
	if sctp := c.pc.SCTP(); sctp != nil {
		if pair, err := sctp.Transport().ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
			if pair.Local.Typ == webrtc.ICECandidateTypeRelay || pair.Remote.Typ == webrtc.ICECandidateTypeRelay {
				return PathTURN
			}
		}
	}
	return PathDirect
}

type descriptionMsg struct {
	Type        string                    `json:"type"`
	Description webrtc.SessionDescription `json:"description"`
}

type candidateMsg struct {
	Type      string                   `json:"type"`
	Candidate *webrtc.ICECandidateInit `json:"candidate"`
}

type pathMsg struct {
	Type string `json:"type"`
	Path Path   `json:"path"`
}

func (c *Conn) send(msg any) {
	if err := c.call.Send(msg); err != nil {
		c.log.Debug("signal not sent", "err", err)
	}
}

// TypeNegotiate asks the other side to make an offer (PROTOCOL.md section
// 10): a polite peer that cannot roll back an offer of its own sends it
// instead of offering, so that its offers never collide.
const TypeNegotiate = "negotiate"

// negotiate is perfect negotiation's onnegotiationneeded. pion cannot roll
// an offer back, which the polite side of a collision must do: so the
// polite side here never offers, and asks the impolite side to.
//
// An offer from the other side has no place for a track this side added
// since: the negotiate message names the kinds of those tracks
// ("receive"), and the impolite side adds a receiving transceiver for each
// before it offers, which this side's sending one then takes.
func (c *Conn) negotiate() {
	if c.call.Polite() {
		m := negotiateMsg{Type: TypeNegotiate, Receive: c.unplacedKinds()}
		c.log.Debug("negotiation needed: asking for an offer", "receive", m.Receive)
		c.send(m)
		return
	}
	c.log.Debug("negotiation needed: offering")
	c.offer(nil)
}

type negotiateMsg struct {
	Type    string   `json:"type"`
	Receive []string `json:"receive,omitempty"`
}

// unplacedKinds returns the kinds of the sending transceivers that no
// negotiation has placed yet.
func (c *Conn) unplacedKinds() []string {
	var kinds []string
	for _, t := range c.pc.GetTransceivers() {
		if t.Mid() == "" && t.Sender() != nil && t.Sender().Track() != nil {
			kinds = append(kinds, t.Kind().String())
		}
	}
	return kinds
}

// onNegotiate answers the polite side's request for an offer: a receiving
// transceiver for each kind it names, then an offer.
func (c *Conn) onNegotiate(m negotiateMsg) {
	for _, k := range m.Receive {
		kind := webrtc.NewRTPCodecType(k)
		if kind == 0 {
			continue
		}
		if _, err := c.pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			c.log.Debug("receiving transceiver", "kind", k, "err", err)
		}
	}
	c.offer(nil)
}

// offer makes and sends an offer, unless one is under way or the
// connection is not stable.
func (c *Conn) offer(opts *webrtc.OfferOptions) {
	c.negMu.Lock()
	if c.makingOffer || c.pc.SignalingState() != webrtc.SignalingStateStable {
		c.negMu.Unlock()
		return
	}
	c.makingOffer = true
	c.negMu.Unlock()
	defer func() {
		c.negMu.Lock()
		c.makingOffer = false
		c.negMu.Unlock()
	}()
	offer, err := c.pc.CreateOffer(opts)
	if err == nil {
		err = c.setLocal(offer)
	}
	if err != nil {
		c.log.Debug("offer", "err", err)
		return
	}
	c.log.Debug("offer sent", "restart", opts != nil && opts.ICERestart)
}

// setLocal sets d as the local description and sends it, then the
// candidates gathered meanwhile.
func (c *Conn) setLocal(d webrtc.SessionDescription) error {
	c.candMu.Lock()
	c.descSent = false
	c.candMu.Unlock()
	err := c.pc.SetLocalDescription(d)
	c.candMu.Lock()
	defer c.candMu.Unlock()
	if err == nil {
		c.send(descriptionMsg{Type: TypeDescription, Description: *c.pc.LocalDescription()})
	}
	c.descSent = true
	for _, m := range c.localCands {
		c.send(m)
	}
	c.localCands = nil
	return err
}

// onDescription is perfect negotiation's handling of a remote description.
func (c *Conn) onDescription(desc webrtc.SessionDescription) error {
	c.log.Debug("remote description", "type", desc.Type.String(), "state", c.pc.SignalingState().String())
	c.negMu.Lock()
	collision := desc.Type == webrtc.SDPTypeOffer && (c.makingOffer || c.pc.SignalingState() != webrtc.SignalingStateStable)
	c.ignoreOffer = !c.call.Polite() && collision
	ignore := c.ignoreOffer
	c.negMu.Unlock()
	if ignore {
		return nil
	}
	if collision {
		// Only the polite side gets here, and it makes no offers of its
		// own (negotiate): a remote offer before the answer to the last
		// one was set cannot come in order.
		return fmt.Errorf("an offer in signalling state %s", c.pc.SignalingState())
	}
	if err := c.pc.SetRemoteDescription(desc); err != nil {
		return err
	}
	if desc.Type != webrtc.SDPTypeOffer {
		return nil
	}
	answer, err := c.pc.CreateAnswer(nil)
	if err == nil {
		err = c.setLocal(answer)
	}
	return err
}

// signals reads the call's messages until it ends.
func (c *Conn) signals() {
	defer c.wg.Done()
	for {
		msg, err := c.call.Recv()
		if err != nil {
			c.end(fmt.Errorf("peer: the call ended: %w", err))
			return
		}
		switch msg.Type {
		case TypeDescription:
			var m descriptionMsg
			if msg.Decode(&m) != nil || c.pc == nil {
				continue
			}
			if err := c.onDescription(m.Description); err != nil {
				c.log.Debug("remote description", "err", err)
			}
			if c.pc.RemoteDescription() != nil {
				for _, cand := range c.remoteCands {
					c.addCandidate(cand)
				}
				c.remoteCands = nil
			}
		case TypeCandidate:
			var m candidateMsg
			if msg.Decode(&m) != nil || c.pc == nil || m.Candidate == nil {
				continue
			}
			if c.pc.RemoteDescription() == nil {
				// Sent before its description by a peer that does not
				// wait: kept until the description comes.
				if len(c.remoteCands) < maxEarlyCandidates {
					c.remoteCands = append(c.remoteCands, *m.Candidate)
				}
				continue
			}
			c.addCandidate(*m.Candidate)
		case TypeNegotiate:
			var m negotiateMsg
			if msg.Decode(&m) == nil && c.pc != nil && !c.call.Polite() {
				c.onNegotiate(m)
			}
		case TypePath:
			var m pathMsg
			if msg.Decode(&m) == nil && m.Path == PathRelay {
				c.wg.Add(1)
				go func() {
					defer c.wg.Done()
					c.toRelay(false)
				}()
			}
		}
	}
}

// maxEarlyCandidates bounds the remote candidates kept before the remote
// description.
const maxEarlyCandidates = 64

func (c *Conn) addCandidate(cand webrtc.ICECandidateInit) {
	err := c.pc.AddICECandidate(cand)
	c.log.Debug("remote candidate", "candidate", cand.Candidate, "err", err)
}

// fallback takes the relay when the data channel has not opened within
// DirectTimeout; the impolite side decides and tells the other.
func (c *Conn) fallback() {
	defer c.wg.Done()
	t := time.NewTimer(c.opts.DirectTimeout)
	defer t.Stop()
	select {
	case <-c.ready:
	case <-c.ctx.Done():
	case <-t.C:
		if !c.call.Polite() && c.st.path() == nil {
			c.toRelay(true)
		}
	}
}

// toRelay moves the data to the relay pipe of the call, unless it is
// there or on its way; announce tells the other side to do the same.
func (c *Conn) toRelay(announce bool) {
	c.mu.Lock()
	if c.relaying || c.ctx.Err() != nil {
		c.mu.Unlock()
		return
	}
	c.relaying = true
	c.mu.Unlock()
	if announce {
		c.send(pathMsg{Type: TypePath, Path: PathRelay})
	}
	r, me, other := c.call.room, c.call.room.id, c.call.peer.ID
	conn, err := r.sess.Relay(c.ctx, r.ns, me+"/data/"+other+"/"+c.call.id, other+"/data/"+me+"/"+c.call.id)
	if err != nil {
		c.end(fmt.Errorf("peer: relay: %w", err))
		return
	}
	if conn.Peer().ID != other {
		conn.Reset()
		c.end(fmt.Errorf("peer: the relay paired with %q, not %q", conn.Peer().ID, other))
		return
	}
	c.usePath(newPath(PathRelay, conn, bufio.NewReaderSize(conn, 64<<10)))
}

// usePath makes p the connection's path, and the connection ready.
func (c *Conn) usePath(p *path) {
	if c.ctx.Err() != nil {
		p.rwc.Close()
		return
	}
	c.st.use(p, &c.wg, c.pathFailed)
	c.mu.Lock()
	if !c.isReady {
		c.isReady = true
		close(c.ready)
	}
	c.mu.Unlock()
	c.log.Debug("connection path", "path", p.kind)
	if c.opts.OnPath != nil {
		c.opts.OnPath(p.kind)
	}
}

// pathFailed is told that p's reader stopped with err. The relay failing
// ends the connection; the data channel failing sends the data to the
// relay.
func (c *Conn) pathFailed(p *path, err error) {
	if c.ctx.Err() != nil || c.st.path() != p {
		return
	}
	if p.kind == PathRelay {
		c.end(fmt.Errorf("peer: the relay ended: %w", err))
		return
	}
	c.log.Debug("data channel ended", "err", err)
	c.toRelay(!c.call.Polite())
}

// iceState heals the connection: when ICE fails, or stays disconnected
// past the grace, the impolite side restarts ICE; when ICE is not back
// within DirectTimeout, the data takes the relay.
func (c *Conn) iceState(state webrtc.ICEConnectionState) {
	c.log.Debug("ICE", "state", state.String())
	c.mu.Lock()
	defer c.mu.Unlock()
	switch state {
	case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
		c.stopTimersLocked()
		c.restarts = 0
	case webrtc.ICEConnectionStateDisconnected:
		if c.grace == nil {
			c.grace = time.AfterFunc(c.opts.DisconnectGrace, func() { c.iceState(webrtc.ICEConnectionStateFailed) })
		}
	case webrtc.ICEConnectionStateFailed:
		// The first failure heals: a restart, and the relay when ICE is
		// not back in time. Later ones (the restart failing too) wait for
		// that deadline rather than push it back.
		if c.iceTimer != nil || c.relaying || c.ctx.Err() != nil {
			return
		}
		if c.restarts == 0 && !c.call.Polite() {
			c.restarts++
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.restartICE()
			}()
		}
		c.iceTimer = time.AfterFunc(c.opts.DirectTimeout, func() {
			if !c.call.Polite() {
				c.toRelay(true)
			}
		})
	}
}

// stopTimersLocked stops the healing timers. Called with c.mu held.
func (c *Conn) stopTimersLocked() {
	for _, t := range []**time.Timer{&c.grace, &c.iceTimer} {
		if *t != nil {
			(*t).Stop()
			*t = nil
		}
	}
}

// restartICE makes an offer that restarts ICE, with fresh ICE servers when
// ICEServersFunc gives them.
func (c *Conn) restartICE() {
	if f := c.opts.ICEServersFunc; f != nil {
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.DirectTimeout)
		servers, err := f(ctx)
		cancel()
		if err == nil {
			cfg := c.pc.GetConfiguration()
			cfg.ICEServers = servers
			if err := c.pc.SetConfiguration(cfg); err != nil {
				c.log.Debug("ICE servers not updated", "err", err)
			}
		}
	}
	c.offer(&webrtc.OfferOptions{ICERestart: true})
}

// end records why the connection ended and stops it.
func (c *Conn) end(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
		c.log.Debug("connection ended", "err", err)
	}
	c.stopTimersLocked()
	c.mu.Unlock()
	c.cancel()
	c.st.end(c.endErr())
}

func (c *Conn) endErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		return net.ErrClosed
	}
	return c.err
}

// Path returns how the data travels.
func (c *Conn) Path() Path {
	if p := c.st.path(); p != nil {
		return p.kind
	}
	return PathNone
}

// PeerConnection returns the WebRTC peer connection, to add or remove
// media tracks (renegotiation runs over the call by itself); nil when the
// connection took the relay without WebRTC (ForceRelay).
func (c *Conn) PeerConnection() *webrtc.PeerConnection { return c.pc }

// Call returns the call the connection runs over.
func (c *Conn) Call() *Call { return c.call }

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.ctx.Done() }

// Read reads data the other side wrote.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.wait(c.rdl); err != nil {
		return 0, err
	}
	return c.st.Read(p)
}

// Write sends p to the other side. The bytes are kept until the other side
// has them, so that they survive a change of path.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.wait(c.wdl); err != nil {
		return 0, err
	}
	return c.st.Write(p)
}

// wait blocks until the data path is ready, the connection ends or the
// deadline passes.
func (c *Conn) wait(d *deadline) error {
	select {
	case <-c.ready:
		return nil
	default:
	}
	select {
	case <-c.ready:
		return nil
	case <-c.ctx.Done():
		return c.endErr()
	case <-d.wait():
		return os.ErrDeadlineExceeded
	}
}

// CloseLinger bounds how long Close waits for the other side to
// acknowledge the bytes written.
const CloseLinger = 5 * time.Second

// CloseWrite ends the data this side sends: the other side's Read returns
// io.EOF once it has read every byte before. Reading goes on.
func (c *Conn) CloseWrite() error {
	if err := c.wait(c.wdl); err != nil {
		return err
	}
	c.st.closeWrite()
	return nil
}

// Close ends the connection: it sends the end of the data (as CloseWrite),
// waits up to CloseLinger for the other side to have every byte written,
// then ends the data path, the peer connection and the call. It waits for
// the connection's goroutines.
func (c *Conn) Close() error {
	c.mu.Lock()
	open := c.isReady && c.err == nil
	c.mu.Unlock()
	if open {
		c.st.closeWrite()
		if !c.st.flush(CloseLinger) {
			c.log.Debug("closed with bytes the other side has not acknowledged")
		}
	}
	c.end(net.ErrClosed)
	c.call.Close("connection closed")
	if c.pc != nil {
		c.pc.Close()
	}
	c.call.conn.Reset() // unblocks the signals reader
	c.wg.Wait()
	return nil
}

// LocalAddr and RemoteAddr name the two peers.
func (c *Conn) LocalAddr() net.Addr  { return peerAddr(c.call.room.id) }
func (c *Conn) RemoteAddr() net.Addr { return peerAddr(c.call.peer.ID) }

type peerAddr string

func (a peerAddr) Network() string { return "signalchannel" }
func (a peerAddr) String() string  { return string(a) }

// SetDeadline, SetReadDeadline and SetWriteDeadline bound the waits of Read
// and Write as net.Conn's do.
func (c *Conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rdl.set(t)
	c.st.setDeadline(&c.st.rdl, t)
	return nil
}

func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wdl.set(t)
	c.st.setDeadline(&c.st.wdl, t)
	return nil
}

var _ net.Conn = (*Conn)(nil)

// deadline is a settable deadline whose channel closes when it passes.
type deadline struct {
	mu    sync.Mutex
	timer *time.Timer
	c     chan struct{}
}

func newDeadline() *deadline { return &deadline{c: make(chan struct{})} }

// set arms the deadline at t; the zero t disarms it.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	select {
	case <-d.c:
		d.c = make(chan struct{})
	default:
	}
	if t.IsZero() {
		return
	}
	c := d.c
	if left := time.Until(t); left <= 0 {
		close(c)
	} else {
		d.timer = time.AfterFunc(left, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			select {
			case <-c:
			default:
				close(c)
			}
		})
	}
}

// wait returns the channel that closes when the deadline passes.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.c
}
