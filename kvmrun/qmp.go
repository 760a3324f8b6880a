package kvmrun

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"
)

// QMP is a client of QEMU's machine protocol on a unix socket: JSON
// objects, one per line. The server greets with {"QMP": ...}; the client
// must send qmp_capabilities before any other command; each command is
// answered by {"return": ...} or {"error": {"class", "desc"}} carrying the
// command's "id", and asynchronous {"event": ...} objects may come in
// between.
type QMP struct {
	conn net.Conn
	dec  *json.Decoder

	mu     sync.Mutex
	nextID int
	events []QMPEvent
}

// QMPEvent is an asynchronous event QEMU sent (SHUTDOWN, POWERDOWN, ...).
type QMPEvent struct {
	Name string          `json:"event"`
	Data json.RawMessage `json:"data,omitempty"`
	// Time is when QEMU sent the event (zero when it said nothing).
	Time time.Time `json:"-"`
}

// qmpTime is an event's timestamp as QEMU writes it.
type qmpTime struct {
	Seconds      int64 `json:"seconds"`
	Microseconds int64 `json:"microseconds"`
}

func (t *qmpTime) time() time.Time {
	if t == nil || t.Seconds == 0 {
		return time.Time{}
	}
	return time.Unix(t.Seconds, t.Microseconds*1000)
}

// QMPError is an error answer to a QMP command.
type QMPError struct {
	Command string
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *QMPError) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// DialQMP connects to the QMP socket at path, retrying until the socket
// accepts or ctx is done (QEMU creates it a moment after it starts), and
// negotiates capabilities.
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	var d net.Dialer
	var conn net.Conn
	for {
		var err error
		conn, err = d.DialContext(ctx, "unix", path)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connecting to QMP socket %s: %w (last error: %v)", path, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return handshake(ctx, conn, path)
}

// handshake reads the greeting on conn and negotiates capabilities.
func handshake(ctx context.Context, conn net.Conn, name string) (*QMP, error) {
	q := &QMP{conn: conn, dec: json.NewDecoder(bufio.NewReader(conn))}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var greeting struct {
		QMP *struct {
			Version json.RawMessage `json:"version"`
		} `json:"QMP"`
	}
	if err := q.dec.Decode(&greeting); err != nil {
		conn.Close()
		return nil, fmt.Errorf("reading QMP greeting from %s: %w", name, ctxErr(ctx, err))
	}
	if greeting.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("QMP socket %s: no greeting", name)
	}
	if _, err := q.Execute(ctx, "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

// Execute runs a command with arguments (nil for none) and returns its
// "return" value.
func (q *QMP) Execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.nextID++
	id := q.nextID
	req := map[string]any{"execute": command, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	if dl, ok := ctx.Deadline(); ok {
		q.conn.SetDeadline(dl)
	} else {
		q.conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { q.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, ctxErr(ctx, err))
	}
	for {
		var msg struct {
			Return json.RawMessage `json:"return"`
			Error  *QMPError       `json:"error"`
			Event  string          `json:"event"`
			Data   json.RawMessage `json:"data"`
			Time   *qmpTime        `json:"timestamp"`
			ID     *int            `json:"id"`
		}
		if err := q.dec.Decode(&msg); err != nil {
			return nil, fmt.Errorf("qmp %s: %w", command, ctxErr(ctx, err))
		}
		switch {
		case msg.Event != "":
			q.events = append(q.events, QMPEvent{Name: msg.Event, Data: msg.Data, Time: msg.Time.time()})
		case msg.ID == nil || *msg.ID != id:
			// an answer to a command abandoned earlier
		case msg.Error != nil:
			msg.Error.Command = command
			return nil, msg.Error
		default:
			return msg.Return, nil
		}
	}
}

// Events returns the events received so far.
func (q *QMP) Events() []QMPEvent {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]QMPEvent(nil), q.events...)
}

// Close closes the connection.
func (q *QMP) Close() error { return q.conn.Close() }

// ctxErr prefers ctx's error over the I/O error its cancellation caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
