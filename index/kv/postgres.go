package kv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresOptions tune OpenPostgres.
type PostgresOptions struct {
	// Node names this process in Holders; "" picks HOSTNAME:PID.
	Node string
	// MaxConns bounds the pool; 0 picks 32. A sync holds one connection
	// per ingest worker (its shared lock) and takes another to commit.
	MaxConns int32
	// LeaseCheck is how often a lease proves it still holds its lock;
	// 0 picks 2 s. A holder that cannot loses the lease at once.
	LeaseCheck time.Duration
	Log        *slog.Logger
}

// Postgres is the engine for several nodes: the keys in one table,
// retraced_kv (k bytea primary key, v bytea), locks and leases as
// PostgreSQL advisory locks, which the server drops with the session
// that held them (a node killed with -9 loses its leases as soon as its
// connections close), and commits announced with NOTIFY.
type Postgres struct {
	pool  *pgxpool.Pool
	node  string
	id    string // this process's NOTIFY payload
	check time.Duration
	log   *slog.Logger

	changed chan struct{}
	stop    context.CancelFunc
	done    chan struct{}
}

const (
	notifyChannel = "retraced_kv"
	pageSize      = 256 // rows per page of a scan
)

// schema creates what the engine needs; run at every open, idempotent.
const schema = `
CREATE TABLE IF NOT EXISTS retraced_kv (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE IF NOT EXISTS retraced_leases (
	name  text PRIMARY KEY,
	node  text NOT NULL,
	pid   integer NOT NULL,
	since timestamptz NOT NULL DEFAULT now()
);`

// OpenPostgres connects to the database dsn (a postgres:// URL or
// key=value string, as libpq takes it) and creates the tables when
// missing.
func OpenPostgres(ctx context.Context, dsn string, o PostgresOptions) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", redact(dsn), err)
	}
	cfg.MaxConns = 32
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", redact(dsn), err)
	}
	if _, err := pool.Exec(ctx, schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("index %s: create tables: %w", redact(dsn), err)
	}
	p := &Postgres{pool: pool, node: o.Node, check: o.LeaseCheck, log: o.Log,
		changed: make(chan struct{}, 1), done: make(chan struct{})}
	if p.node == "" {
		host, _ := os.Hostname()
		p.node = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if p.check == 0 {
		p.check = 2 * time.Second
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	var b [8]byte
	rand.Read(b[:])
	p.id = hex.EncodeToString(b[:])
	lctx, stop := context.WithCancel(context.Background())
	p.stop = stop
	go p.listen(lctx)
	return p, nil
}

// redact drops a password from a DSN for messages.
func redact(dsn string) string {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "(unparsable postgres DSN)"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

// pgTxn is a transaction. Writes are kept until commit and sent as two
// statements (one upsert, one delete) instead of a round trip each;
// reads look at them first, then at what Prefetch read, and a scan sends
// them before it reads.
type pgTxn struct {
	tx      pgx.Tx
	writes  map[string][]byte // nil value: deleted
	fetched map[string][]byte // Prefetch's reads; nil value: absent
	n       int
}

// known is what the transaction holds of key without asking PostgreSQL:
// its own write, or a prefetched read.
func (t *pgTxn) known(key []byte) (v []byte, ok bool) {
	if v, ok = t.writes[string(key)]; ok {
		return v, true
	}
	v, ok = t.fetched[string(key)]
	return v, ok
}

// Prefetch implements Prefetcher: one SELECT for every key.
func (t *pgTxn) Prefetch(keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	if t.fetched == nil {
		t.fetched = make(map[string][]byte, len(keys))
	}
	for _, k := range keys {
		t.fetched[string(k)] = nil
	}
	rows, err := t.tx.Query(context.Background(), `SELECT k, v FROM retraced_kv WHERE k = ANY($1::bytea[])`, keys)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k, v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return err
		}
		if v == nil {
			v = []byte{}
		}
		t.fetched[string(k)] = v
	}
	return rows.Err()
}

func (t *pgTxn) Get(key []byte) ([]byte, error) {
	if v, ok := t.known(key); ok {
		if v == nil {
			return nil, ErrNotFound
		}
		return bytes.Clone(v), nil
	}
	var v []byte
	err := t.tx.QueryRow(context.Background(), `SELECT v FROM retraced_kv WHERE k = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	return v, err
}

func (t *pgTxn) Has(key []byte) (bool, error) {
	if v, ok := t.known(key); ok {
		return v != nil, nil
	}
	var found bool
	err := t.tx.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM retraced_kv WHERE k = $1)`, key).Scan(&found)
	return found, err
}

func (t *pgTxn) Scan(prefix []byte, keysOnly bool, fn func(k, v []byte) error) error {
	if err := t.flush(); err != nil {
		return err
	}
	end := PrefixEnd(prefix)
	from, incl := prefix, true
	if from == nil {
		from = []byte{} // NULL would match nothing
	}
	for {
		var rows pgx.Rows
		var err error
		col := "v"
		if keysOnly {
			col = "NULL::bytea"
		}
		op := ">"
		if incl {
			op = ">="
		}
		q := `SELECT k, ` + col + ` FROM retraced_kv WHERE k ` + op + ` $1`
		args := []any{from}
		if end != nil {
			q += ` AND k < $2`
			args = append(args, end)
		}
		q += fmt.Sprintf(` ORDER BY k LIMIT %d`, pageSize)
		rows, err = t.tx.Query(context.Background(), q, args...)
		if err != nil {
			return err
		}
		type kv struct{ k, v []byte }
		var page []kv
		for rows.Next() {
			var r kv
			if err := rows.Scan(&r.k, &r.v); err != nil {
				rows.Close()
				return err
			}
			page = append(page, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, r := range page {
			if err := fn(r.k, r.v); err != nil {
				return err
			}
		}
		if len(page) < pageSize {
			return nil
		}
		from, incl = page[len(page)-1].k, false
	}
}

func (t *pgTxn) Set(key, value []byte) error {
	if t.writes == nil {
		return errors.New("write in a read-only transaction")
	}
	if value == nil {
		value = []byte{}
	}
	t.writes[string(key)] = bytes.Clone(value)
	return nil
}

func (t *pgTxn) Delete(key []byte) error {
	if t.writes == nil {
		return errors.New("write in a read-only transaction")
	}
	t.writes[string(key)] = nil
	return nil
}

// flush sends the kept writes.
func (t *pgTxn) flush() error {
	if len(t.writes) == 0 {
		return nil
	}
	var setK, setV, del [][]byte
	for k, v := range t.writes {
		if v == nil {
			del = append(del, []byte(k))
		} else {
			setK, setV = append(setK, []byte(k)), append(setV, v)
		}
	}
	ctx := context.Background()
	if len(setK) > 0 {
		if _, err := t.tx.Exec(ctx, `INSERT INTO retraced_kv (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[])
			ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v`, setK, setV); err != nil {
			return err
		}
	}
	if len(del) > 0 {
		if _, err := t.tx.Exec(ctx, `DELETE FROM retraced_kv WHERE k = ANY($1::bytea[])`, del); err != nil {
			return err
		}
	}
	for k := range t.writes {
		delete(t.fetched, k) // PostgreSQL has the written value now
	}
	t.n += len(t.writes)
	clear(t.writes)
	return nil
}

// View implements Engine: a read-only transaction on one snapshot.
func (p *Postgres) View(fn func(Reader) error) error {
	ctx := context.Background()
	tx, err := p.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	defer tx.Rollback(ctx)
	if err := fn(&pgTxn{tx: tx}); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// writeLock serialises Updates across nodes: the index's read-modify-
// write transactions (a build-id's matches, the totals) assume it.
var writeLock = lockKey("write")

// Update implements Engine.
func (p *Postgres) Update(fn func(Txn) error) error {
	ctx := context.Background()
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, writeLock); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	t := &pgTxn{tx: tx, writes: map[string][]byte{}}
	if err := fn(t); err != nil {
		return err
	}
	if err := t.flush(); err != nil {
		return err
	}
	if t.n > 0 {
		// Delivered to the listeners when the transaction commits.
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, p.id); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// lockKey maps a lock or lease name to PostgreSQL's 64-bit advisory
// lock key space.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("retraced:" + name))
	return int64(h.Sum64())
}

// Lock implements Engine with a session advisory lock on a connection
// kept until release.
func (p *Postgres) Lock(ctx context.Context, name string, shared bool) (func(), error) {
	c, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	take, give := `SELECT pg_advisory_lock($1)`, `SELECT pg_advisory_unlock($1)`
	if shared {
		take, give = `SELECT pg_advisory_lock_shared($1)`, `SELECT pg_advisory_unlock_shared($1)`
	}
	key := lockKey("lock/" + name)
	if _, err := c.Exec(ctx, take, key); err != nil {
		c.Release()
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := c.Exec(uctx, give, key); err != nil {
				// The lock went with the session, or will when it closes.
				c.Conn().Close(uctx)
			}
			c.Release()
		})
	}, nil
}

// Lease implements Engine: a session advisory lock, taken without
// waiting, on a connection of its own that proves every LeaseCheck that
// it is still alive; a row in retraced_leases says who holds it.
func (p *Postgres) Lease(ctx context.Context, name string) (context.Context, func(), error) {
	pc, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("lease %s: %w", name, err)
	}
	conn := pc.Hijack() // ours alone: the lock lives as long as it
	key := lockKey("lease/" + name)
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil {
		conn.Close(context.Background())
		return nil, nil, fmt.Errorf("lease %s: %w", name, err)
	}
	if !got {
		conn.Close(context.Background())
		return nil, nil, fmt.Errorf("lease %s: %w", name, ErrLeaseHeld)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO retraced_leases (name, node, pid) VALUES ($1, $2, pg_backend_pid())
		ON CONFLICT (name) DO UPDATE SET node = EXCLUDED.node, pid = EXCLUDED.pid, since = now()`, name, p.node); err != nil {
		conn.Close(context.Background())
		return nil, nil, fmt.Errorf("lease %s: %w", name, err)
	}
	lctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex // the connection serves one query at a time
	stopped := make(chan struct{})
	go func() {
		t := time.NewTicker(p.check)
		defer t.Stop()
		for {
			select {
			case <-stopped:
				return
			case <-lctx.Done():
				return
			case <-t.C:
			}
			mu.Lock()
			cctx, ccancel := context.WithTimeout(context.Background(), p.check+5*time.Second)
			_, err := conn.Exec(cctx, `SELECT 1`)
			ccancel()
			mu.Unlock()
			if err != nil {
				p.log.Warn("lease lost: its connection to PostgreSQL failed", "lease", name, "err", err)
				cancel()
				return
			}
		}
	}()
	var once sync.Once
	return lctx, func() {
		once.Do(func() {
			close(stopped)
			cancel()
			mu.Lock()
			defer mu.Unlock()
			uctx, ucancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer ucancel()
			conn.Exec(uctx, `DELETE FROM retraced_leases WHERE name = $1 AND pid = pg_backend_pid()`, name)
			// Unlocked here, so that the lease is free when release
			// returns; closing the session would free it too, but only
			// once the server has noticed, a moment later.
			conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, key)
			conn.Close(uctx)
		})
	}, nil
}

// Holders implements Engine: the leases whose holding session is alive.
func (p *Postgres) Holders(ctx context.Context) (map[string]string, error) {
	rows, err := p.pool.Query(ctx, `SELECT name, node FROM retraced_leases l
		WHERE EXISTS (SELECT 1 FROM pg_locks k WHERE k.locktype = 'advisory' AND k.granted AND k.pid = l.pid)`)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for rows.Next() {
		var name, node string
		if err := rows.Scan(&name, &node); err != nil {
			rows.Close()
			return nil, err
		}
		out[name] = node
	}
	return out, rows.Err()
}

// Changed implements Engine.
func (p *Postgres) Changed() <-chan struct{} { return p.changed }

func (p *Postgres) signal() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// listen passes other processes' commits to Changed, reconnecting when
// its connection fails (and then signalling, since it may have missed
// some).
func (p *Postgres) listen(ctx context.Context) {
	defer close(p.done)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := p.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		p.log.Warn("index: listening for other nodes' commits failed; retrying", "err", err)
		p.signal()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (p *Postgres) listenOnce(ctx context.Context) error {
	pc, err := p.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := pc.Hijack()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `LISTEN `+notifyChannel); err != nil {
		return err
	}
	p.signal() // anything before LISTEN took effect
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Payload != p.id {
			p.signal()
		}
	}
}

// Compact implements Engine: fresh planner statistics after a bulk load.
func (p *Postgres) Compact() error {
	_, err := p.pool.Exec(context.Background(), `ANALYZE retraced_kv`)
	return err
}

// Close stops listening and closes the pool.
func (p *Postgres) Close() error {
	p.stop()
	<-p.done
	p.pool.Close()
	return nil
}
