//go:build !linux

package wsraw

import (
	"net"
	"sync/atomic"
	"syscall"
)

// parking is Linux's epoll set; elsewhere every Conn reads with a goroutine.
type parking struct{}

func (k *parking) init(net.Conn, func())       {}
func (k *parking) able() bool                  { return false }
func (k *parking) tryRead([]byte) (int, error) { return 0, syscall.EAGAIN }
func (k *parking) park(*atomic.Bool) bool      { return false }
func (k *parking) wake()                       {}
func (k *parking) forget()                     {}
