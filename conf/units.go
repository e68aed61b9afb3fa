package conf

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in TOML as a Go duration string:
// "10s", "1m30s", "250ms", "5us" (or "5µs"). A bare number is rejected
// because its unit would be a guess.
type Duration time.Duration

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// String formats d as time.Duration does ("10s", "5µs").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	if s == "" {
		return fmt.Errorf("empty duration (want e.g. \"10s\" or \"5us\")")
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		if s == "0" {
			*d = 0
			return nil
		}
		return fmt.Errorf("duration %q has no unit (want e.g. \"%ss\" or \"%sms\")", s, s, s)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. \"10s\", \"250ms\" or \"5us\")", s)
	}
	*d = Duration(v)
	return nil
}

// Size is an amount of memory or data in bytes. In TOML and on the command
// line it is an integer (bytes) or a string with a unit, following xl's
// convention (memory=, xl mem-set), which QEMU's -m and the kernel's mem=
// share: a bare K, M, G or T suffix is binary, so "256M" is 256 MiB, as are
// "256m" and "256MiB". Decimal units need the explicit kB, MB, GB or TB
// ("1GB" is 10^9 bytes). B or no unit means bytes. Units are
// case-insensitive.
type Size uint64

// Common sizes.
const (
	KiB Size = 1 << 10 // kibibyte
	MiB Size = 1 << 20 // mebibyte
	GiB Size = 1 << 30 // gibibyte
	TiB Size = 1 << 40 // tebibyte
)

// sizeExample is what an error about a size suggests instead.
const sizeExample = `e.g. "256M" or "256MiB" (binary), "1GB" (10^9 bytes) or a number of bytes`

var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

// Bytes returns s as a number of bytes.
func (s Size) Bytes() uint64 { return uint64(s) }

// Pages returns how many 4 KiB pages s spans, rounded up.
func (s Size) Pages() uint64 { return (uint64(s) + 4095) / 4096 }

// String formats s with the largest binary unit that divides it exactly
// ("512MiB", "1GiB", "4097B").
func (s Size) String() string {
	for _, u := range []struct {
		n    Size
		name string
	}{{TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
		if s != 0 && s%u.n == 0 {
			return fmt.Sprintf("%d%s", s/u.n, u.name)
		}
	}
	return fmt.Sprintf("%dB", uint64(s))
}

// MarshalText implements encoding.TextMarshaler.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(text []byte) error {
	v, err := parseQuantity(string(text), sizeUnits, "size", sizeExample)
	if err != nil {
		return err
	}
	*s = Size(v)
	return nil
}

// Rate is a data rate in bits per second; 0 means unlimited where the
// setting allows it. In TOML it is written in bits per second as tc(8) does
// ("1gbit", "100mbit", "512kbit", "2000bit") or in bytes per second with a
// "/s" suffix ("125MB/s", "100MiB/s", "4096B/s"). A bare number is bits per
// second. Units are case-insensitive; k, m, g, t are powers of 1000 and
// KiB/s, MiB/s, GiB/s powers of 1024.
type Rate uint64

// Common rates.
const (
	Kbit Rate = 1e3 // kilobit per second
	Mbit Rate = 1e6 // megabit per second
	Gbit Rate = 1e9 // gigabit per second
	// MinRate is the smallest limit: one byte a second.
	MinRate Rate = 8
)

var rateUnits = map[string]float64{
	"": 1, "bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
	"b/s": 8, "kb/s": 8e3, "mb/s": 8e6, "gb/s": 8e9, "tb/s": 8e12,
	"kib/s": 8 << 10, "mib/s": 8 << 20, "gib/s": 8 << 30, "tib/s": 8 << 40,
}

// BitsPerSecond returns r in bits per second.
func (r Rate) BitsPerSecond() uint64 { return uint64(r) }

// BytesPerSecond returns r in bytes per second (0 for unlimited).
func (r Rate) BytesPerSecond() float64 { return float64(r) / 8 }

// Unlimited reports whether r is 0, which means no limit.
func (r Rate) Unlimited() bool { return r == 0 }

// String formats r in tc(8) notation ("1gbit", "100mbit", "1500bit"), or
// "0" for unlimited.
func (r Rate) String() string {
	if r == 0 {
		return "0"
	}
	for _, u := range []struct {
		n    Rate
		name string
	}{{1e12, "tbit"}, {Gbit, "gbit"}, {Mbit, "mbit"}, {Kbit, "kbit"}} {
		if r != 0 && r%u.n == 0 {
			return fmt.Sprintf("%d%s", r/u.n, u.name)
		}
	}
	return fmt.Sprintf("%dbit", uint64(r))
}

// MarshalText implements encoding.TextMarshaler.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Rate) UnmarshalText(text []byte) error {
	v, err := parseQuantity(string(text), rateUnits, "rate", `e.g. "1gbit", "100mbit", "125MB/s" or 0 for unlimited`)
	if err != nil {
		return err
	}
	if v > 0 && v < MinRate.BitsPerSecond() {
		// Under a byte a second: a limit in bytes would round it to
		// nothing, that is, to unlimited.
		return fmt.Errorf("rate %q is under one byte a second (8bit): give at least 8bit, or 0 for unlimited", string(text))
	}
	*r = Rate(v)
	return nil
}

// parseQuantity parses "<number>[ ]<unit>" where unit is a key of units
// (lower case) and returns number*unit rounded to the nearest integer.
func parseQuantity(text string, units map[string]float64, what, want string) (uint64, error) {
	s := strings.TrimSpace(text)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.' || s[i] == '_') {
		i++
	}
	rest := strings.TrimSpace(s[i:])
	num, unit := strings.ReplaceAll(s[:i], "_", ""), strings.ToLower(rest)
	if num == "" {
		if strings.HasPrefix(s, "-") {
			return 0, fmt.Errorf("%s %q is negative", what, s)
		}
		return 0, fmt.Errorf("invalid %s %q (want %s)", what, s, want)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid %s %q (want %s)", what, s, want)
	}
	mult, ok := units[unit]
	if !ok {
		return 0, fmt.Errorf("invalid %s %q: unknown unit %q (want %s)", what, s, rest, want)
	}
	v := math.Round(f * mult)
	if v >= math.MaxUint64 {
		return 0, fmt.Errorf("%s %q is too large", what, s)
	}
	return uint64(v), nil
}
