package conf

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/BurntSushi/toml"
)

// Error is a configuration error: it names the file, the key and, for
// errors found while decoding, the line. Load, Parse and Validate return
// *Error values (several of them joined with errors.Join when Validate finds
// more than one problem).
type Error struct {
	File string // file name as given to Load or Parse; "config" when unknown
	Line int    // 1-based line of the value, 0 when not known
	Key  string // dotted key such as "migration.pivots"; may be empty
	Err  error  // what is wrong
}

// Error formats e as "FILE[:LINE]: [KEY: ]MESSAGE".
func (e *Error) Error() string {
	s := e.File
	if s == "" {
		s = "config"
	}
	if e.Line > 0 {
		s += ":" + strconv.Itoa(e.Line)
	}
	if e.Key != "" {
		s += ": " + e.Key
	}
	return s + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// ErrUnknownKey is wrapped by the error for a key that the schema does not
// know.
var ErrUnknownKey = errors.New("unknown key")

// tomlErrRE matches the plain errors BurntSushi/toml returns for type
// mismatches: `toml: line 3 (last key "migration.pivots"): message`.
var tomlErrRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key ("(?:[^"\\]|\\.)*")\): (.*)$`)

// decodeError turns an error of toml.Decode into an *Error that keeps the
// line and the key.
func decodeError(file string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &Error{File: file, Line: pe.Position.Line, Key: pe.LastKey, Err: errors.New(pe.Message)}
	}
	if m := tomlErrRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		key, uerr := strconv.Unquote(m[2])
		if uerr != nil {
			key = m[2]
		}
		return &Error{File: file, Line: line, Key: key, Err: errors.New(m[3])}
	}
	return &Error{File: file, Err: fmt.Errorf("decode: %w", err)}
}
