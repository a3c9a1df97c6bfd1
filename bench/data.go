package main

// The appliance dataset: hosts and scan results whose JSONB documents look
// like a vulnerability scanner's output (repeated keys, words from a
// vocabulary, version strings, and random digests that do not compress), so
// that dump sizes and compression times are those of real data, not of
// pgbench's zero-filled rows.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

var words = strings.Fields(`a an the in of to for with on by from via when which that
allows attacker remote local unauthenticated authenticated user users crafted request
requests packet packets header headers buffer overflow underflow heap stack memory
corruption leak disclosure information sensitive denial service crash infinite loop
out-of-bounds read write use-after-free double free null pointer dereference integer
signed truncation race condition privilege escalation arbitrary code execution command
injection sql cross-site scripting path traversal directory symbolic link file files
certificate validation bypass authentication authorization session token cookie
password hash weak cipher protocol handshake downgrade tls ssl x509 parser parsing
decoder encoder compression decompression archive image font xml json yaml regular
expression catastrophic backtracking timeout resource exhaustion cpu consumption
configuration default insecure permissions world-writable temporary race kernel driver
module network interface socket netfilter bluetooth usb filesystem ext4 btrfs nfs smb
dns resolver cache poisoning http2 stream reset rapid server client proxy gateway
library function component version versions before after prior fixed upstream vendor
affected vulnerable could might may cause lead result results trigger triggered via
specially malformed input inputs length check missing improper incorrect insufficient
validation sanitization handling error path cleanup initialization`)

var packages = strings.Fields(`openssl openssh-server openssh-client libc6 glibc curl libcurl4 wget
nginx apache2 httpd bind9 dnsmasq sudo systemd udev dbus polkit policykit-1 bash zlib1g
libxml2 libxslt1.1 libpng16-16 libjpeg62-turbo libtiff6 libwebp7 freetype expat sqlite3
postgresql-15 mariadb-server redis-server python3.11 perl nodejs php8.2 ruby3.1 git
vim less tar gzip bzip2 xz-utils unzip rsync samba cups ntp chrony linux-image-amd64
firmware-linux grub2 shim intel-microcode amd64-microcode gnutls28 nss krb5 libssh2
openldap cyrus-sasl2 pam shadow util-linux coreutils findutils procps iproute2 iptables
nftables containerd runc docker.io podman qemu-system-x86 libvirt0 java-17-openjdk tomcat9`)

var severities = []string{"low", "medium", "medium", "high", "high", "critical"}
var osNames = []string{"debian 12.5", "debian 11.9", "ubuntu 22.04", "ubuntu 24.04", "rhel 9.3", "rocky 8.9", "windows server 2022", "alma 9.3"}

// gen produces deterministic rows.
type gen struct {
	r     *rand.Rand
	hosts int
	seq   int64
	base  time.Time
}

func newGen(seed int64, hosts int) *gen {
	return &gen{r: rand.New(rand.NewSource(seed)), hosts: hosts, base: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (g *gen) sentence(b *strings.Builder, min, max int) {
	n := min + g.r.Intn(max-min+1)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[g.r.Intn(len(words))])
	}
}

func (g *gen) hex(b *strings.Builder, n int) {
	const digits = "0123456789abcdef"
	for i := 0; i < n; i++ {
		b.WriteByte(digits[g.r.Intn(16)])
	}
}

func (g *gen) version(b *strings.Builder) {
	fmt.Fprintf(b, "%d.%d.%d-%d", g.r.Intn(12), g.r.Intn(30), g.r.Intn(40), 1+g.r.Intn(9))
}

// findings writes one scan's JSON document.
func (g *gen) findings(b *strings.Builder, status string) {
	n := 0
	switch status {
	case "ok":
		n = g.r.Intn(2)
	case "warning":
		n = 1 + g.r.Intn(4)
	case "critical":
		n = 3 + g.r.Intn(8)
	case "unknown":
		n = 0
	}
	osn := osNames[g.r.Intn(len(osNames))]
	fmt.Fprintf(b, `{"scanner": "openwatch-agent", "scanner_version": "2.%d.%d", "duration_ms": %d, "os": {"name": %q, "kernel": "6.1.0-%d-amd64", "uptime_s": %d}, "open_ports": [`,
		g.r.Intn(5), g.r.Intn(10), 200+g.r.Intn(20000), osn, 10+g.r.Intn(20), g.r.Intn(10_000_000))
	ports := 1 + g.r.Intn(6)
	for i := 0; i < ports; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa([]int{22, 80, 443, 3389, 5432, 8080, 8443, 161, 25, 53}[g.r.Intn(10)] + i*0))
	}
	b.WriteString(`], "findings": [`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		pkg := packages[g.r.Intn(len(packages))]
		fmt.Fprintf(b, `{"id": "CVE-20%02d-%d", "severity": "%s", "cvss": %d.%d, "package": "%s", "installed": "`,
			18+g.r.Intn(8), 1000+g.r.Intn(60000), severities[g.r.Intn(len(severities))], 1+g.r.Intn(9), g.r.Intn(10), pkg)
		g.version(b)
		b.WriteString(`", "fixed": "`)
		g.version(b)
		b.WriteString(`", "title": "`)
		g.sentence(b, 5, 12)
		b.WriteString(`", "description": "`)
		g.sentence(b, 15, 45)
		b.WriteString(`", "evidence_sha256": "`)
		g.hex(b, 64)
		fmt.Fprintf(b, `", "path": "/usr/lib/x86_64-linux-gnu/%s.so.%d"}`, pkg, g.r.Intn(4))
	}
	b.WriteString(`], "summary": "`)
	g.sentence(b, 4, 20)
	b.WriteString(`", "run_id": "`)
	g.hex(b, 32)
	b.WriteString(`"}`)
}

func (g *gen) status() string {
	x := g.r.Intn(100)
	switch {
	case x < 70:
		return "ok"
	case x < 90:
		return "warning"
	case x < 98:
		return "critical"
	}
	return "unknown"
}

// scanRows writes n rows in COPY text format (no field needs escaping: the
// generator never emits backslash, tab or newline).
func (g *gen) scanRows(w io.Writer, n int) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	var b strings.Builder
	for i := 0; i < n; i++ {
		g.seq++
		b.Reset()
		st := g.status()
		b.WriteString(strconv.Itoa(1 + g.r.Intn(g.hosts)))
		b.WriteByte('\t')
		b.WriteString(g.base.Add(time.Duration(g.seq) * 7 * time.Second).Format("2006-01-02 15:04:05+00"))
		b.WriteByte('\t')
		b.WriteString(st)
		b.WriteByte('\t')
		g.findings(&b, st)
		b.WriteByte('\n')
		if _, err := bw.WriteString(b.String()); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func (g *gen) hostRows(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	for i := 1; i <= g.hosts; i++ {
		fmt.Fprintf(bw, "host-%06d.site%02d.example.net\t10.%d.%d.%d\n", i, g.r.Intn(40), (i>>16)&255, (i>>8)&255, i&255)
	}
	return bw.Flush()
}

// loader fills the benchmark database and grows it step by step.
type loader struct {
	url   string
	g     *gen
	scans int64
}

func copyIn(ctx context.Context, conn *pgx.Conn, sql string, fill func(io.Writer) error) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(fill(pw)) }()
	_, err := conn.PgConn().CopyFrom(ctx, pr, sql)
	pr.Close()
	return err
}

// loadHosts inserts the host rows (once).
func (l *loader) loadHosts(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, l.url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return copyIn(ctx, conn, "COPY hosts (hostname, address) FROM STDIN", l.g.hostRows)
}

// growTo adds scan results until the database reaches target bytes
// (pg_database_size, indexes included). The scan_results indexes are dropped
// during the bulk load and rebuilt from their own definitions.
func (l *loader) growTo(ctx context.Context, target int64, logf func(string, ...any)) (int64, error) {
	conn, err := pgx.Connect(ctx, l.url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	size := func() int64 {
		var s int64
		conn.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&s)
		return s
	}
	cur := size()
	if cur >= target {
		return cur, nil
	}
	// Bytes per row with indexes, measured on a first batch.
	const probe = 2000
	if err := copyIn(ctx, conn, "COPY scan_results (host_id, scanned_at, status, findings) FROM STDIN",
		func(w io.Writer) error { return l.g.scanRows(w, probe) }); err != nil {
		return 0, err
	}
	l.scans += probe
	after := size()
	perRow := float64(after-cur) / probe
	if perRow < 200 {
		perRow = 200
	}
	need := int(float64(target-after) / perRow)
	logf("  %.0f bytes/row with indexes; adding %d scan results", perRow, need)
	if need > 0 {
		rows, err := conn.Query(ctx, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'scan_results' AND indexname NOT LIKE '%_pkey'")
		if err != nil {
			return 0, err
		}
		var names, defs []string
		for rows.Next() {
			var n, d string
			rows.Scan(&n, &d)
			names, defs = append(names, n), append(defs, d)
		}
		rows.Close()
		for _, n := range names {
			if _, err := conn.Exec(ctx, "DROP INDEX "+pgx.Identifier{n}.Sanitize()); err != nil {
				return 0, err
			}
		}
		const batch = 50000
		for left := need; left > 0; left -= batch {
			k := min(batch, left)
			if err := copyIn(ctx, conn, "COPY scan_results (host_id, scanned_at, status, findings) FROM STDIN",
				func(w io.Writer) error { return l.g.scanRows(w, k) }); err != nil {
				return 0, err
			}
			l.scans += int64(k)
		}
		conn.Exec(ctx, "SET maintenance_work_mem = '256MB'")
		for _, d := range defs {
			if _, err := conn.Exec(ctx, d); err != nil {
				return 0, err
			}
		}
	}
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		return 0, err
	}
	return size(), nil
}
