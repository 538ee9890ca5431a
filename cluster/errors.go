package cluster

import "errors"

// Sentinel errors of the package.
var (
	// ErrClosed is returned by a Node, Broker, ReplicaLink or Pairer after
	// its Close.
	ErrClosed = errors.New("cluster: closed")
	// ErrEmptyNamespace is returned for an empty namespace, which has no
	// subject.
	ErrEmptyNamespace = errors.New("cluster: empty namespace")
	// ErrBadMessage marks a message from another node that cannot be
	// decoded; it is logged and dropped.
	ErrBadMessage = errors.New("cluster: malformed message")
	// ErrPeerGone ends a relay pipe whose other end stopped answering: its
	// node left the cluster or forgot the pipe.
	ErrPeerGone = errors.New("cluster: relay peer gone")
)
