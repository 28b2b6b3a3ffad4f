package verify

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes the report as a table, one row per account, then every
// mismatch with its record ids, then the verdict.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "verify %s: postgres %s vs kafka topic %s (%d partitions, start offsets %s, end offsets %s), window %s\n",
		r.Table, r.DBTable, r.Topic, r.Partitions, r.StartOffsets, r.EndOffsets, r.Window)
	fmt.Fprintf(w, "kafka messages read: %d", r.Messages)
	if r.OtherTables > 0 {
		fmt.Fprintf(w, " (%d of other tables)", r.OtherTables)
	}
	if r.Undecodable > 0 {
		fmt.Fprintf(w, " (%d undecodable: keyed by their headers)", r.Undecodable)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	if len(r.Reads) > 0 {
		fmt.Fprintln(tw, "PARTITION\tSTART\tEND\tHIGH WATERMARK\tREAD\tFETCHED\tREAD PAST END")
		for _, p := range r.Reads {
			fetched := strconv.FormatInt(p.Fetched, 10)
			if p.Fetched < 0 {
				fetched = "?"
			}
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%s\t%d\n", p.Partition, p.Start, p.End, p.HighWatermark, p.Read, fetched, p.PastEndRead)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if r.PastEnd {
		fmt.Fprintln(w, "records missing in the window's offsets were looked for up to the high watermarks (READ PAST END): messages produced out of time order sit there")
	}
	if r.Empty {
		if r.OK {
			fmt.Fprintf(w, "\nOK: no row in postgres and no message of the table in kafka in the window: nothing to compare (allowed)\n")
		} else {
			fmt.Fprintf(w, "\nNOTHING TO COMPARE: no row in postgres and no message of the table in kafka in the window %s\n", r.Window)
		}
		return nil
	}
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "ACCOUNT\tROUTED TO\tDB ROWS\tDB DIGEST\tKAFKA IDS\tKAFKA DIGEST\tKAFKA DUPLICATES\tRESULT")
	for _, a := range r.Accounts {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%d\t%s\n", a.Account, a.routed(), a.DB.Count, a.DB.Digest, a.Kafka.Count, a.Kafka.Digest, a.Duplicates, a.result())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Mismatched) > 0 {
		fmt.Fprintln(w, "\nmismatches:")
		for _, a := range r.Accounts {
			if !a.Checked || a.Agree {
				continue
			}
			if n := len(a.MissingInKafka); n > 0 {
				fmt.Fprintf(w, "  account %s: %d missing in kafka: %s\n", a.Account, n, strings.Join(a.MissingInKafka, ", "))
			}
			if n := len(a.MissingInDB); n > 0 {
				fmt.Fprintf(w, "  account %s: %d missing in postgres: %s\n", a.Account, n, strings.Join(a.MissingInDB, ", "))
			}
		}
	}
	info := len(r.Accounts) - r.Checked
	switch {
	case r.Checked == 0 && r.OK:
		fmt.Fprintf(w, "\nOK: no account is routed to both sinks, nothing to compare (allowed; %d account(s) listed for information)\n", info)
	case r.Checked == 0:
		fmt.Fprintf(w, "\nNOTHING TO COMPARE: no account in the window is routed to both sinks (%d account(s) listed for information)\n", info)
	case r.OK:
		fmt.Fprintf(w, "\nOK: all %d account(s) routed to both sinks agree (%d more listed for information) [%v]\n", r.Checked, info, r.Elapsed.Round(time.Millisecond))
	default:
		fmt.Fprintf(w, "\nMISMATCH: %d of %d account(s) routed to both sinks disagree: %s\n", len(r.Mismatched), r.Checked, strings.Join(r.Mismatched, ", "))
	}
	return nil
}

func (a *Account) routed() string {
	switch {
	case a.RoutedDB && a.RoutedKafka:
		return "db+kafka"
	case a.RoutedDB:
		return "db"
	case a.RoutedKafka:
		return "kafka"
	}
	return "none"
}

func (a *Account) result() string {
	switch {
	case a.Checked && a.Agree:
		return "ok"
	case a.Checked:
		var parts []string
		if n := len(a.MissingInKafka); n > 0 {
			parts = append(parts, fmt.Sprintf("%d missing in kafka", n))
		}
		if n := len(a.MissingInDB); n > 0 {
			parts = append(parts, fmt.Sprintf("%d missing in postgres", n))
		}
		return "MISMATCH: " + strings.Join(parts, ", ")
	case a.Agree:
		return "same (not checked)"
	}
	return "differs (not checked: not routed to both)"
}
