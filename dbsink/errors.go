package dbsink

import (
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrClosed is returned by Submit after Close, and is what a batch still
// retrying when Close is called is acknowledged with.
var ErrClosed = errors.New("dbsink: sink is closed")

// Reasons the sink passes to [loader.Batch.Reject]; they are metric labels.
const (
	// ReasonBadColumn: a value does not convert to its column's type. The
	// detail is "<column>: <why>".
	ReasonBadColumn = "bad_column"
	// ReasonDBRejected: PostgreSQL refused the row with a data error
	// (SQLSTATE class 22 or 23, e.g. a CHECK or NOT NULL constraint). The
	// detail is PostgreSQL's message with the SQLSTATE.
	ReasonDBRejected = "db_rejected"
	// ReasonMalformedRow: the row is not a JSON object the schema can walk
	// (it did not come through schema.Decode).
	ReasonMalformedRow = "malformed_json"
)

// connLostError marks an error after which the connection was found closed:
// whatever the error says, the transaction did not commit on that
// connection (or committed and the reply was lost), and a new connection
// may succeed. It lets Retryable recognise connection loss without a list
// of every network error text.
type connLostError struct{ err error }

func (e *connLostError) Error() string { return e.err.Error() + " (connection lost)" }
func (e *connLostError) Unwrap() error { return e.err }

// Retryable reports whether err is transient: retrying the same
// transaction later, on a new connection if need be, may succeed. The sink
// retries such errors itself, without limit; callers use Retryable for
// their own calls such as [Sink.Migrate] at start-up.
//
// Transient are: failure to connect (server down or starting, too many
// connections, even authentication, which an operator can fix while we
// wait), a lost connection, timeouts, and the SQLSTATEs of class 08
// (connection exception), 40 (serialization failure, deadlock), 53
// (insufficient resources, e.g. disk full) except 53400, 57P01/57P02/57P03/
// 57P05 (admin or crash shutdown, cannot connect now, idle session
// timeout), 55P03 and 55006 (lock not available, object in use), 25006 (a
// read-only transaction: we reached a standby during a failover) and 58030
// (I/O error).
//
// Not transient: data errors (classes 22, 23: the sink isolates the rows
// instead), 57014 query_canceled (a statement_timeout would only fire
// again, and pgx reports a value it could not encode this way too),
// undefined tables or columns, permission errors, and context cancellation.
func Retryable(err error) bool {
	var re *rejectError
	if err == nil || errors.Is(err, ErrClosed) || errors.As(err, &re) {
		return false
	}
	var lost *connLostError
	if errors.As(err, &lost) {
		return true
	}
	// Checked before PgError: a ConnectError can wrap the server's FATAL
	// (28P01, 3D000, 57P03), and every failure to connect is worth waiting
	// out.
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return retryableCode(pe.Code)
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

func retryableCode(code string) bool {
	switch code {
	case "57P01", "57P02", "57P03", "57P05", "55P03", "55006", "25006", "58030":
		return true
	case "53400": // configuration_limit_exceeded: waiting does not change it
		return false
	}
	if len(code) != 5 {
		return false
	}
	switch code[:2] {
	case "08", "40", "53":
		return true
	}
	return false
}

// isDataError reports whether err is PostgreSQL refusing the data itself,
// so that splitting the batch isolates the rows to dead-letter. 54000
// (program_limit_exceeded, e.g. an id too long for its btree index) is
// data-dependent too: without it one oversized value would block the
// stream forever.
func isDataError(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) != 5 {
		return false
	}
	switch pe.Code[:2] {
	case "22", "23":
		return true
	}
	return pe.Code == "54000"
}

// isUniqueViolation reports a unique_violation (SQLSTATE 23505).
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// rejectError wraps a failure to write a dead letter: the row can be
// neither stored nor set aside, so the batch must fail rather than lose it.
type rejectError struct{ err error }

func (e *rejectError) Error() string { return "dead-letter row: " + e.err.Error() }
func (e *rejectError) Unwrap() error { return e.err }
