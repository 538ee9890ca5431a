package model_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/signalchannel/signalchannel/model"
)

// Two replicas kept in sync through a pair of pipes, as a Go client and the
// server are through a stream.
func Example() {
	a := model.New(model.Options{ID: "alice"})
	defer a.Close()
	b := model.New(model.Options{ID: "bob"})
	defer b.Close()

	ctx, cancel := context.WithCancel(context.Background())
	abR, abW := io.Pipe()
	baR, baW := io.Pipe()
	done := make(chan error, 2)
	go func() { done <- a.Replicate(ctx, baR, abW, model.ReplicateOptions{}) }()
	go func() { done <- b.Replicate(ctx, abR, baW, model.ReplicateOptions{}) }()

	sub := b.Subscribe(0)
	defer sub.Cancel()
	if err := a.Set("presence/alice", map[string]string{"status": "online"}); err != nil {
		panic(err)
	}
	u := <-sub.Updates()
	fmt.Printf("bob learnt %s = %s from %s\n", u.Key, u.Value, u.Source)

	cancel()
	<-done
	<-done
	// Output: bob learnt presence/alice = {"status":"online"} from alice
}

func ExampleParseLine() {
	msg, err := model.ParseLine([]byte(`[["presence/bob",{"status":"away"}],1700000000000.5,"bob"]` + "\n"))
	if err != nil {
		panic(err)
	}
	fmt.Println(msg.Kind, msg.Update.Key, string(msg.Update.Value), msg.Update.Source)

	_, err = model.ParseLine([]byte(`{"id":"bob"}`))
	fmt.Println(err)
	// Output:
	// update presence/bob {"status":"away"} bob
	// model: bad_line: digest without clock
}

func ExampleAppendUpdate() {
	u := model.Update{Key: "k", Value: json.RawMessage(`"v"`), TS: 1700000000000.001, Source: "alice"}
	fmt.Print(string(model.AppendUpdate(nil, u)))
	u.TS = 1e21
	fmt.Print(string(model.AppendUpdate(nil, u)))
	// Output:
	// [["k","v"],1700000000000.001,"alice"]
	// [["k","v"],1e+21,"alice"]
}

// Expiry driven by a clock the caller controls.
func ExampleModel_Sweep() {
	now := time.UnixMilli(1700000000000)
	m := model.New(model.Options{ID: "server", MaxAge: time.Minute, Now: func() time.Time { return now }, SweepInterval: time.Hour})
	defer m.Close()
	sub := m.Subscribe(0)
	defer sub.Cancel()

	_, _ = m.Apply(model.Update{Key: "presence/bob", Value: json.RawMessage(`true`), TS: 1700000000000, Source: "bob"})
	<-sub.Updates()
	now = now.Add(time.Minute)
	m.Sweep()
	fmt.Print(string(model.AppendUpdate(nil, <-sub.Updates())))
	// Output: [["presence/bob",null],1700000060000,"server"]
}
