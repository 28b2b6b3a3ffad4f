package schema

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// epochMillisThreshold separates epoch seconds from epoch milliseconds: an
// absolute value below 1e11 is seconds (1e11 s is the year 5138), at or above
// it milliseconds (1e11 ms is 1973-03-03). So the heuristic misreads only
// millisecond times before March 1973 and second times after 5138, neither
// of which an ingestion API produces.
const epochMillisThreshold = 1e11

// Times outside years 0001-9999 are refused: RFC 3339 cannot write them,
// and such a value in an event is a bug, not a date.
var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// epochTime applies the seconds/milliseconds heuristic of ParseTime to an
// integer.
func epochTime(v int64) (time.Time, error) {
	if v > -epochMillisThreshold && v < epochMillisThreshold {
		if v < minTime.Unix() || v > maxTime.Unix() {
			return time.Time{}, errors.New("epoch value out of range")
		}
		return time.Unix(v, 0).UTC(), nil
	}
	if v < minTime.UnixMilli() || v > maxTime.UnixMilli() {
		return time.Time{}, errors.New("epoch value out of range")
	}
	return time.UnixMilli(v).UTC(), nil
}

// ParseTime converts a raw JSON value to a time, in UTC:
//
//   - a number is Unix epoch seconds if its absolute value is below 1e11,
//     else epoch milliseconds; a fraction is kept (to the nanosecond for
//     integers, to float64 precision otherwise);
//   - a string is RFC 3339, with optional fractional seconds
//     ("2019-11-28T13:35:56Z", "2019-11-28T14:35:56.123+01:00").
//
// Anything else, and any time outside the years 0001-9999, is an error.
// [Schema.Decode] uses it for the time field and for timestamptz columns;
// the Postgres sink can use it to turn such a value into a timestamptz.
func ParseTime(raw []byte) (time.Time, error) {
	if len(raw) == 0 {
		return time.Time{}, errors.New("empty time value")
	}
	var t time.Time
	switch c := raw[0]; {
	case c == '"':
		s := scanner{b: raw}
		cs, ce, esc, err := s.str()
		if err != nil || s.i != len(raw) {
			return time.Time{}, errors.New("invalid JSON string")
		}
		str := raw[cs:ce]
		if esc {
			str = unescape(nil, str)
		}
		pt, perr := time.Parse(time.RFC3339Nano, string(str))
		if perr != nil {
			return time.Time{}, fmt.Errorf("not an RFC 3339 time: %w", perr)
		}
		t = pt
	case c == '-' || c >= '0' && c <= '9':
		s := scanner{b: raw}
		_, _, isInt, err := s.num()
		if err != nil || s.i != len(raw) {
			return time.Time{}, errors.New("invalid JSON number")
		}
		if isInt {
			v, ok := parseInt(raw)
			if !ok {
				return time.Time{}, errors.New("epoch value out of range")
			}
			return epochTime(v)
		}
		f, perr := strconv.ParseFloat(string(raw), 64)
		if perr != nil || math.IsInf(f, 0) {
			return time.Time{}, errors.New("epoch value out of range")
		}
		unit := float64(time.Second)
		if math.Abs(f) >= epochMillisThreshold {
			unit = float64(time.Millisecond)
		}
		whole, frac := math.Modf(f)
		secs := whole * unit / float64(time.Second)
		if secs < float64(minTime.Unix()) || secs > float64(maxTime.Unix()) {
			return time.Time{}, errors.New("epoch value out of range")
		}
		if unit == float64(time.Second) {
			t = time.Unix(int64(whole), int64(math.Round(frac*unit)))
		} else {
			t = time.UnixMilli(int64(whole)).Add(time.Duration(math.Round(frac * unit)))
		}
	default:
		return time.Time{}, errors.New("time must be an epoch number or an RFC 3339 string")
	}
	t = t.UTC()
	if t.Before(minTime) || t.After(maxTime) {
		return time.Time{}, errors.New("time outside years 0001-9999")
	}
	return t, nil
}
