package rotatefile

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ActiveSuffix marks the file a writer is appending to. A reader that sees it
// knows more lines may come; on rotation the suffix is removed by a rename.
const ActiveSuffix = ".open"

// seqWidth zero-pads sequence numbers so that lexical order of names is
// creation order for 10^16 files, far beyond any stream's life.
const seqWidth = 16

// nameTimeLayout puts the UTC creation time in names for humans; ordering
// never depends on it.
const nameTimeLayout = "20060102T150405.000Z"

// FileName returns the sealed name of the file with sequence number seq
// created at t, e.g. "0000000000000042-20261122T033620.123Z.ndjson".
func FileName(seq uint64, t time.Time, ext string) string {
	return fmt.Sprintf("%0*d-%s%s", seqWidth, seq, t.UTC().Format(nameTimeLayout), ext)
}

// Name is a parsed file name of a stream.
type Name struct {
	Seq     uint64
	Created time.Time
	// Active is true for a name ending in [ActiveSuffix].
	Active bool
	// Sealed is the name without [ActiveSuffix].
	Sealed string
}

// ParseName parses a name made by [FileName], with or without [ActiveSuffix].
// ok is false for any other name, which readers should leave alone.
func ParseName(name string) (n Name, ok bool) {
	n.Sealed = name
	if s, found := strings.CutSuffix(name, ActiveSuffix); found {
		n.Active = true
		n.Sealed = s
	}
	if len(n.Sealed) < seqWidth+2+len(nameTimeLayout) || n.Sealed[seqWidth] != '-' {
		return Name{}, false
	}
	seq, err := strconv.ParseUint(n.Sealed[:seqWidth], 10, 64)
	if err != nil {
		return Name{}, false
	}
	rest := n.Sealed[seqWidth+1:]
	t, err := time.Parse(nameTimeLayout, rest[:len(nameTimeLayout)])
	if err != nil {
		return Name{}, false
	}
	ext := rest[len(nameTimeLayout):]
	if ext != "" && ext[0] != '.' {
		return Name{}, false
	}
	n.Seq, n.Created = seq, t
	return n, true
}
