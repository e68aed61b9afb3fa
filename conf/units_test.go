package conf

import (
	"testing"
	"time"
)

func TestDurationText(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"10s", 10 * time.Second, ""},
		{"5us", 5 * time.Microsecond, ""},
		{"5µs", 5 * time.Microsecond, ""},
		{"1m30s", 90 * time.Second, ""},
		{"0ms", 0, ""},
		{"0", 0, ""},
		{" 250ms ", 250 * time.Millisecond, ""},
		{"-1s", -time.Second, ""},
		{"10", 0, `duration "10" has no unit (want e.g. "10s" or "10ms")`},
		{"", 0, `empty duration (want e.g. "10s" or "5us")`},
		{"ten seconds", 0, `invalid duration "ten seconds" (want e.g. "10s", "250ms" or "5us")`},
	} {
		var d Duration
		err := d.UnmarshalText([]byte(tt.in))
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("Duration.UnmarshalText(%q) = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || d.Duration() != tt.want {
			t.Errorf("Duration.UnmarshalText(%q) = %v, %v, want %v", tt.in, d, err, tt.want)
		}
	}
}

func TestSizeText(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Size
		err  string
	}{
		// Bytes.
		{"4096", 4096, ""},
		{"0", 0, ""},
		{"100B", 100, ""},
		{"1_048_576", MiB, ""},
		// A bare K/M/G/T suffix is binary, in any case, as xl's memory= is.
		{"4K", 4 * KiB, ""},
		{"4k", 4 * KiB, ""},
		{"256M", 256 * MiB, ""},
		{"256m", 256 * MiB, ""},
		{"2G", 2 * GiB, ""},
		{"2g", 2 * GiB, ""},
		{"1T", TiB, ""},
		{"1t", TiB, ""},
		{"1.5G", 3 * GiB / 2, ""},
		{"256 M", 256 * MiB, ""},
		// Explicit binary units.
		{"4KiB", 4 * KiB, ""},
		{"512MiB", 512 * MiB, ""},
		{"512mib", 512 * MiB, ""},
		{"1GiB", GiB, ""},
		{"1gib", GiB, ""},
		{"1 GiB", GiB, ""},
		{"1.5GiB", 3 * GiB / 2, ""},
		{"1TiB", TiB, ""},
		// Decimal only with an explicit kB/MB/GB/TB.
		{"4kB", 4000, ""},
		{"4KB", 4000, ""},
		{"256MB", 256e6, ""},
		{"256mb", 256e6, ""},
		{"1GB", 1e9, ""},
		{"1.5GB", 15e8, ""},
		{"1TB", 1e12, ""},
		// Errors say what is wrong and show an example.
		{"", 0, `invalid size "" (want e.g. "256M" or "256MiB" (binary), "1GB" (10^9 bytes) or a number of bytes)`},
		{"GiB", 0, `invalid size "GiB" (want e.g. "256M" or "256MiB" (binary), "1GB" (10^9 bytes) or a number of bytes)`},
		{"1..5GiB", 0, `invalid size "1..5GiB" (want e.g. "256M" or "256MiB" (binary), "1GB" (10^9 bytes) or a number of bytes)`},
		{"-1GiB", 0, `size "-1GiB" is negative`},
		{"1gbit", 0, `invalid size "1gbit": unknown unit "gbit" (want e.g. "256M" or "256MiB" (binary), "1GB" (10^9 bytes) or a number of bytes)`},
		{"1Mi", 0, `invalid size "1Mi": unknown unit "Mi" (want e.g. "256M" or "256MiB" (binary), "1GB" (10^9 bytes) or a number of bytes)`},
		{"99999999TiB", 0, `size "99999999TiB" is too large`},
	} {
		var s Size
		err := s.UnmarshalText([]byte(tt.in))
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("Size.UnmarshalText(%q) = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || s != tt.want {
			t.Errorf("Size.UnmarshalText(%q) = %d, %v, want %d", tt.in, s, err, tt.want)
		}
	}
}

func TestSizeString(t *testing.T) {
	for _, tt := range []struct {
		s    Size
		want string
	}{
		{0, "0B"},
		{1, "1B"},
		{4096, "4KiB"},
		{512 * MiB, "512MiB"},
		{GiB, "1GiB"},
		{3 * GiB / 2, "1536MiB"},
		{2 * TiB, "2TiB"},
		{GiB + 1, "1073741825B"},
	} {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("Size(%d).String() = %q, want %q", uint64(tt.s), got, tt.want)
		}
	}
	if got := (GiB + 1).Pages(); got != 262145 {
		t.Errorf("(GiB+1).Pages() = %d, want 262145", got)
	}
}

func TestRateText(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Rate
		err  string
	}{
		{"0", 0, ""},
		{"1gbit", Gbit, ""},
		{"1Gbit", Gbit, ""},
		{"100mbit", 100 * Mbit, ""},
		{"512kbit", 512 * Kbit, ""},
		{"2.5gbit", 2500 * Mbit, ""},
		{"1500", 1500, ""},
		{"1500bit", 1500, ""},
		{"125MB/s", Gbit, ""},
		{"125mb/s", Gbit, ""},
		{"1MiB/s", 8 << 20, ""},
		{"4096B/s", 8 * 4096, ""},
		{"1GB/s", 8 * Gbit, ""},
		{"1G", 0, `invalid rate "1G": unknown unit "G" (want e.g. "1gbit", "100mbit", "125MB/s" or 0 for unlimited)`},
		{"fast", 0, `invalid rate "fast" (want e.g. "1gbit", "100mbit", "125MB/s" or 0 for unlimited)`},
		{"1gbps", 0, `invalid rate "1gbps": unknown unit "gbps" (want e.g. "1gbit", "100mbit", "125MB/s" or 0 for unlimited)`},
		{"125MB", 0, `invalid rate "125MB": unknown unit "MB" (want e.g. "1gbit", "100mbit", "125MB/s" or 0 for unlimited)`},
		{"-1gbit", 0, `rate "-1gbit" is negative`},
		{"8bit", 8, ""},
		{"1B/s", 8, ""},
		{"7bit", 0, `rate "7bit" is under one byte a second (8bit): give at least 8bit, or 0 for unlimited`},
		{"1bit", 0, `rate "1bit" is under one byte a second (8bit): give at least 8bit, or 0 for unlimited`},
	} {
		var r Rate
		err := r.UnmarshalText([]byte(tt.in))
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("Rate.UnmarshalText(%q) = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || r != tt.want {
			t.Errorf("Rate.UnmarshalText(%q) = %d, %v, want %d", tt.in, r, err, tt.want)
		}
	}
}

func TestRateString(t *testing.T) {
	for _, tt := range []struct {
		r    Rate
		want string
	}{
		{0, "0"},
		{Gbit, "1gbit"},
		{100 * Mbit, "100mbit"},
		{2500 * Mbit, "2500mbit"},
		{1500, "1500bit"},
		{8 << 20, "8388608bit"},
	} {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("Rate(%d).String() = %q, want %q", uint64(tt.r), got, tt.want)
		}
	}
	if got := Gbit.BytesPerSecond(); got != 125e6 {
		t.Errorf("Gbit.BytesPerSecond() = %v, want 1.25e8", got)
	}
	if !Rate(0).Unlimited() || Gbit.Unlimited() {
		t.Errorf("Unlimited() wrong for 0 or 1gbit")
	}
}
