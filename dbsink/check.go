package dbsink

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// CheckTables reports, without changing anything, every configured table
// that is missing, lacks a configured column, or has no unique index on
// its id column: the comparison Migrate makes after its DDL, for `ingest
// doctor`. A nil error means the sink can load every table.
func (s *Sink) CheckTables(ctx context.Context) error {
	var errs []error
	for _, t := range s.cfg.Schema.Tables() {
		err := s.checkTable(ctx, t)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
			err = fmt.Errorf("table %s does not exist", t.Identifier().Sanitize())
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
