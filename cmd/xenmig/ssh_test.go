package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xenmig/xenmig/xenmig"
)

// sshServer is a real OpenSSH server on a free loopback port, with host and
// client keys made for the test, that lets root in with the client key.
type sshServer struct {
	port int
	dir  string
}

// startSSHD starts sshd, or skips the test saying why it cannot.
func startSSHD(t *testing.T) *sshServer {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: the test's sshd logs in as root, which needs root (CI runs as root)")
	}
	sshd := "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		t.Skipf("skipping: no %s (install openssh-server; .ci/run does)", sshd)
	}
	for _, p := range []string{"ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("skipping: no %s (install openssh-client)", p)
		}
	}
	s := &sshServer{dir: t.TempDir()}
	for _, k := range []string{"host_key", "other_host_key", "client_key", "stranger_key"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", k, "-f", s.path(k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %s: %v\n%s", k, err, out)
		}
	}
	s.copyFile(t, "client_key.pub", "authorized_keys")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	config := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
LogLevel ERROR
`, s.port, s.path("host_key"), s.path("sshd.pid"), s.path("authorized_keys"))
	if err := os.WriteFile(s.path("sshd_config"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // its privilege separation directory
		t.Fatal(err)
	}
	cmd := exec.Command(sshd, "-D", "-e", "-f", s.path("sshd_config"))
	var log lockedWriter
	log.w = &strings.Builder{}
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("sshd's log:\n%s", log.w)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd does not listen on port %d: %v", s.port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for file, key := range map[string]string{"known_hosts": "host_key.pub", "wrong_known_hosts": "other_host_key.pub"} {
		pub, err := os.ReadFile(s.path(key))
		if err != nil {
			t.Fatal(err)
		}
		line := fmt.Sprintf("[127.0.0.1]:%d %s", s.port, pub)
		if err := os.WriteFile(s.path(file), []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s *sshServer) path(name string) string { return filepath.Join(s.dir, name) }

func (s *sshServer) copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(s.path(from))
	if err == nil {
		err = os.WriteFile(s.path(to), b, 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// command is the -s SSHCOMMAND that logs in with key, trusting the host
// keys in knownHosts, and never asks anything.
func (s *sshServer) command(key, knownHosts string) string {
	return fmt.Sprintf("ssh -F none -p %d -i %s -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s",
		s.port, s.path(key), s.path(knownHosts))
}

// TestSSHMigration: `xenmig migrate DOMAIN root@HOST` with nothing on HOST
// but sshd and the binary carries a migration between two simulated hosts,
// through a receiver started over ssh, with the guest's memory intact.
func TestSSHMigration(t *testing.T) {
	s := startSSHD(t)
	args := append([]string{"vm-ssh", "root@127.0.0.1", "-s", s.command("client_key", "known_hosts"),
		"--remote-xenmig", xenmigBin, "--json", "--debug"}, guestArgs("stress")...)
	code, out, stderr := migrateProc(t, args...)
	if code != 0 {
		t.Fatalf("xenmig migrate over ssh: exit %d\n%s", code, stderr)
	}
	var res xenmig.Result
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("migrate --json output %q: %v", out, err)
	}
	if res.DigestMatch == nil || !*res.DigestMatch {
		t.Errorf("digest_match = %v, want true", res.DigestMatch)
	}
	// Each page once, but those sent while the destination prepared and
	// written again before the switchover.
	if res.PagesOwned == 0 || res.PagesSent < res.PagesOwned || res.PagesSent > res.PagesOwned+res.EarlyStale {
		t.Errorf("pages_sent %d, pages_owned %d, early_stale %d: want sent = owned (+ up to early_stale), non-zero", res.PagesSent, res.PagesOwned, res.EarlyStale)
	}
	for _, want := range []string{"-s given", "mutual TLS pinned to these one-time keys", `side=destination`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("--debug output lacks %q:\n%s", want, stderr)
		}
	}
}

// TestSSHRefused: when ssh cannot log in, the migration fails before
// anything is sent, with exit 3, and the guest runs on here untouched.
func TestSSHRefused(t *testing.T) {
	s := startSSHD(t)
	for _, tc := range []struct {
		name, key, knownHosts, ssh string
	}{
		{"wrong host key", "client_key", "wrong_known_hosts", "Host key verification failed"},
		{"refused login", "stranger_key", "known_hosts", "Permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"victim", "root@127.0.0.1", "-s", s.command(tc.key, tc.knownHosts),
				"--remote-xenmig", xenmigBin, "--json"}, guestArgs("kcompile")...)
			code, out, stderr := migrateProc(t, args...)
			if code != exitNotMoved {
				t.Fatalf("xenmig migrate exit %d, want %d (not moved)\n%s", code, exitNotMoved, stderr)
			}
			var f failureReport
			if err := json.Unmarshal(out, &f); err != nil || !strings.Contains(f.Error, "over ssh") || !strings.Contains(f.Error, "nothing was sent") {
				t.Errorf("failure JSON %q (%v): want the ssh failure, nothing sent", out, err)
			}
			for _, want := range []string{tc.ssh, "nothing was lost"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if strings.Contains(stderr, "destination prepared") {
				t.Errorf("the migration reached the destination:\n%s", stderr)
			}
		})
	}
}

// TestSSHEmptyCommand: -s "" runs HOST itself as the receiving command, as
// xl migrate -s "" does.
func TestSSHEmptyCommand(t *testing.T) {
	host := xenmigBin + " --backend sim --log-level warn receive --ssh-session --listen 127.0.0.1:0"
	code, out, stderr := migrateProc(t, append([]string{"vm-local", host, "-s", "", "--json"}, guestArgs("web")...)...)
	if code != 0 {
		t.Fatalf("xenmig migrate -s '': exit %d\n%s", code, stderr)
	}
	var res xenmig.Result
	if err := json.Unmarshal(out, &res); err != nil || res.DigestMatch == nil || !*res.DigestMatch {
		t.Errorf("migrate -s '' result %s (%v): want digest_match true", out, err)
	}
}

// TestSSHCommandLine: the command sh runs is xl's: SSHCOMMAND HOST and the
// receiving command, its words quoted for both shells; HOST alone for -s "".
func TestSSHCommandLine(t *testing.T) {
	global := []string{"--log-level", "info"}
	for _, tc := range []struct {
		f    sshFlags
		host string
		want string
	}{
		{sshFlags{command: "ssh", remote: "xenmig"}, "hostB",
			`ssh 'hostB' ''\''xenmig'\''' ''\''--log-level'\''' ''\''info'\''' ''\''receive'\''' ''\''--ssh-session'\'''`},
		{sshFlags{command: "ssh -p 2222", remote: "/opt/x y/xenmig", paused: true}, "root@hostB",
			`ssh -p 2222 'root@hostB' ''\''/opt/x y/xenmig'\''' ''\''--log-level'\''' ''\''info'\''' ''\''receive'\''' ''\''--ssh-session'\''' ''\''--paused'\'''`},
		{sshFlags{command: "", remote: "xenmig"}, "xenmig receive --ssh-session", "xenmig receive --ssh-session"},
	} {
		if got := sshCommandLine(tc.f, tc.host, global); got != tc.want {
			t.Errorf("sshCommandLine(%+v, %q) = %s, want %s", tc.f, tc.host, got, tc.want)
		}
		// What the remote shell finally runs: sh here, then sh there.
		if tc.f.command == "ssh" {
			out, err := exec.Command("sh", "-c", "f() { shift; echo \"$@\"; }; f "+strings.TrimPrefix(tc.want, "ssh ")).Output()
			if err != nil {
				t.Fatal(err)
			}
			remote, err := exec.Command("sh", "-c", "printf '%s|' "+strings.TrimSpace(string(out))).Output()
			if err != nil {
				t.Fatal(err)
			}
			if want := "xenmig|--log-level|info|receive|--ssh-session|"; string(remote) != want {
				t.Errorf("the remote shell runs %q, want %q", remote, want)
			}
		}
	}
}
