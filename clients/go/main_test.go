package main

// Runs Dial and Verify against the real jwtd binary (JWTD_BIN, default
// <repo>/target/release/jwtd) on an ephemeral port. Tokens are signed here
// with Go's standard library (crypto/rsa, crypto/ecdsa), independently of jwtd.
//
// A second jwtd (guarded) only lets listed callers in, names them by the
// x-caller header and limits their rates (guardedCallers); it serves /metrics
// on a free loopback port, where the tests read how many calls it refused,
// and why: jwtd counts a refusal before it answers, so every attempt of a
// call that has returned is already counted.

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	jwtdv1 "jwtdexample/gen/jwtdv1"
)

const (
	issuer     = "https://issuer.test"
	slowIssuer = "https://slow.test"
	// typedIssuer reads jwks.json too, and accepts only access tokens
	// (header typ "at+jwt").
	typedIssuer = "https://typed.test"
	audience    = "orders-api"
	maxBatch    = 8

	callerHeader = "x-caller"
	// bulkBatch tokens of about 4 KiB make a call of 1.2 MB, past grpc-go's
	// default 256 KiB retry buffer.
	bulkBatch = 300
)

// guardedCallers: "limited" refills 2 tokens a second, so a 2-token call
// right after another waits about 1 s: longer than gRPC's own backoff could
// ever wait over 4 attempts (0.1 + 0.2 + 0.4 s at most), so only a retry
// that honours jwtd's pushback gets through. "bulk" takes big batches.
var guardedCallers = fmt.Sprintf(`
[callers]
identity = "header:%s"
allow_unlisted = false
[[callers.caller]]
id = "limited"
tokens_per_second = 2
burst = 2
[[callers.caller]]
id = "bulk"
tokens_per_second = %d
burst = %d
[[callers.caller]]
id = "free"
`, callerHeader, bulkBatch, bulkBatch)

var (
	repo   = mustAbs("../..")
	keys   = filepath.Join(repo, "tests", "data", "keys")
	client jwtdv1.VerifierServiceClient
	conn   *grpc.ClientConn

	guardedTarget string // the guarded jwtd's gRPC address
	metricsURL    string // and its /metrics
)

// mustAbs resolves p from this folder's real path (run-tests.sh builds
// through a symlink).
func mustAbs(p string) string {
	here, err := os.Getwd()
	if err == nil {
		here, err = filepath.EvalSymlinks(here)
	}
	if err != nil {
		panic(err)
	}
	return filepath.Join(here, p)
}

// TestMain starts a JWKS server that answers once then hangs (so a call
// waiting on an unknown-kid refresh outlives its deadline), then jwtd, and
// runs the tests once jwtd's health says SERVING. Every issuer names the
// audience its tokens carry: one with neither audiences nor
// allow_any_audience = true rejects every token unless the call names
// audiences.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	jwks, err := os.ReadFile(filepath.Join(keys, "jwks.json"))
	if err != nil {
		panic(err)
	}
	var once sync.Once
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := false
		once.Do(func() { first = true })
		if !first {
			<-release
			http.Error(w, "gone", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	defer slow.Close()
	defer close(release)

	dir, err := os.MkdirTemp("", "jwtd-go-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	config := fmt.Sprintf(`
listen = "127.0.0.1:0"
metrics_listen = ""
[limits]
max_batch = %d
[fetch]
timeout_seconds = 120
[[issuers]]
issuer = %q
jwks_file = %q
audiences = [%q]
[[issuers]]
issuer = %q
jwks_uri = %q
allow_insecure_http = true
kid_miss_wait_ms = 30000
audiences = [%q]
[[issuers]]
issuer = %q
jwks_file = %q
audiences = [%q]
types = ["at+jwt"]
`, maxBatch, issuer, filepath.Join(keys, "jwks.json"), audience, slowIssuer, slow.URL+"/jwks.json", audience,
		typedIssuer, filepath.Join(keys, "jwks.json"), audience)
	configPath := filepath.Join(dir, "jwtd.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		panic(err)
	}

	target, stop, err := startJwtd(configPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer stop()

	metricsPort, err := freeLoopbackPort()
	if err != nil {
		panic(err)
	}
	guardedConfig := fmt.Sprintf(`
listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:%d"
[limits]
max_batch = %d
[[issuers]]
issuer = %q
jwks_file = %q
audiences = [%q]
%s`, metricsPort, 2*bulkBatch, issuer, filepath.Join(keys, "jwks.json"), audience, guardedCallers)
	guardedPath := filepath.Join(dir, "guarded.toml")
	if err := os.WriteFile(guardedPath, []byte(guardedConfig), 0o600); err != nil {
		panic(err)
	}
	guardedTarget, stop, err = startJwtd(guardedPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "guarded:", err)
		return 2
	}
	defer stop()
	metricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)

	conn, err = Dial(target)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	client = jwtdv1.NewVerifierServiceClient(conn)
	return m.Run()
}

// startJwtd runs jwtd on configPath and returns its gRPC address once its
// health says jwtd.v1.VerifierService is SERVING (the ready line comes
// before keys fetched from a URL are loaded), and a function that stops it.
func startJwtd(configPath string) (string, func(), error) {
	bin := os.Getenv("JWTD_BIN")
	if bin == "" {
		bin = filepath.Join(repo, "target", "release", "jwtd")
	}
	cmd := exec.Command(bin, "--log-format", "json", "--config", configPath)
	// Linux: jwtd dies with this test binary, even when a test panics.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("cannot start jwtd (build it or set JWTD_BIN): %w", err)
	}
	stop := func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}

	addr := make(chan string, 1)
	go func() { // keeps reading stderr so jwtd never blocks on it
		lines := bufio.NewScanner(stderr)
		for lines.Scan() {
			var event struct {
				Fields struct {
					Message string `json:"message"`
					Addr    string `json:"addr"`
				} `json:"fields"`
			}
			if json.Unmarshal(lines.Bytes(), &event) == nil && strings.HasPrefix(event.Fields.Message, "jwtd ready") {
				addr <- event.Fields.Addr
			}
		}
		close(addr)
	}()
	var target string
	select {
	case a, ok := <-addr:
		if !ok {
			stop()
			return "", nil, fmt.Errorf("jwtd exited before its ready line")
		}
		target = a
	case <-time.After(30 * time.Second):
		stop()
		return "", nil, fmt.Errorf("jwtd printed no ready line in 30 s")
	}

	healthConn, err := Dial(target)
	if err != nil {
		stop()
		return "", nil, err
	}
	defer healthConn.Close()
	health := healthpb.NewHealthClient(healthConn)
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		answer, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "jwtd.v1.VerifierService"})
		cancel()
		if err == nil && answer.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return target, stop, nil
		}
		if i == 300 {
			stop()
			return "", nil, fmt.Errorf("jwtd.v1.VerifierService not SERVING after 30 s: %v %v", answer, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freeLoopbackPort is a port nothing listens on now (jwtd cannot report the
// port it took for metrics_listen = ":0", so the suite picks one).
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func privateKey(t *testing.T, name string) crypto.Signer {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(keys, name+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return key.(crypto.Signer)
}

// mint signs an RS256 (RSA key) or ES256 (P-256 key) token with typ "JWT".
func mint(t *testing.T, keyName, kid string, claims map[string]interface{}) string {
	t.Helper()
	return mintTyped(t, keyName, kid, "JWT", claims)
}

// mintTyped is mint with the header's typ.
func mintTyped(t *testing.T, keyName, kid, typ string, claims map[string]interface{}) string {
	t.Helper()
	key := privateKey(t, keyName)
	alg := "RS256"
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		alg = "ES256"
	}
	now := time.Now().Unix()
	payload := map[string]interface{}{"iss": issuer, "aud": audience, "sub": "alice", "iat": now, "exp": now + 300}
	for k, v := range claims {
		payload[k] = v
	}
	header, _ := json.Marshal(map[string]string{"alg": alg, "kid": kid, "typ": typ})
	body, _ := json.Marshal(payload)
	input := b64(header) + "." + b64(body)
	digest := sha256.Sum256([]byte(input))
	var sig []byte
	switch k := key.(type) {
	case *rsa.PrivateKey:
		s, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = s
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 64) // JWS wants fixed-width R || S
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	default:
		t.Fatalf("no signer for %s", keyName)
	}
	return input + "." + b64(sig)
}

func verifyOne(t *testing.T, token string) *jwtdv1.VerifyResult {
	t.Helper()
	results, err := Verify(context.Background(), client, []string{token}, nil, "", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 {
		t.Fatalf("%d results for 1 token", len(results))
	}
	return results[0]
}

func TestValid(t *testing.T) {
	for _, key := range []string{"rsa2048", "p256"} {
		r := verifyOne(t, mint(t, key, key, nil))
		if r.GetStatus() != jwtdv1.Status_STATUS_VALID {
			t.Fatalf("%s: %s: %s", key, r.GetStatus(), r.GetReason())
		}
		if c := r.GetClaims(); c.GetSubject() != "alice" || c.GetKeyId() != key || c.GetIssuer() != issuer {
			t.Fatalf("%s: claims %v", key, c)
		}
	}
}

func TestRejections(t *testing.T) {
	now := time.Now().Unix()
	cases := []struct {
		name  string
		token string
		want  jwtdv1.Status
	}{
		{"expired", mint(t, "rsa2048", "rsa2048", map[string]interface{}{"exp": now - 3600}), jwtdv1.Status_STATUS_EXPIRED},
		{"wrong audience", mint(t, "rsa2048", "rsa2048", map[string]interface{}{"aud": "billing-api"}), jwtdv1.Status_STATUS_AUDIENCE_MISMATCH},
		{"wrong issuer", mint(t, "rsa2048", "rsa2048", map[string]interface{}{"iss": "https://evil.test"}), jwtdv1.Status_STATUS_ISSUER_NOT_TRUSTED},
		{"bad signature", mint(t, "rsa3072", "rsa2048", nil), jwtdv1.Status_STATUS_BAD_SIGNATURE},
		{"unknown kid", mint(t, "rsa2048", "rotated-away", nil), jwtdv1.Status_STATUS_UNKNOWN_KEY},
		{"alg none", b64([]byte(`{"alg":"none"}`)) + "." + b64([]byte(`{"iss":"https://issuer.test"}`)) + ".", jwtdv1.Status_STATUS_UNSUPPORTED_ALGORITHM},
	}
	for _, c := range cases {
		r := verifyOne(t, c.token)
		if r.GetStatus() != c.want || r.GetReason() == "" || r.GetClaims() != nil {
			t.Errorf("%s: got %s %q, want %s with a reason", c.name, r.GetStatus(), r.GetReason(), c.want)
		}
	}
}

func TestRequiredScopes(t *testing.T) {
	for _, grant := range []struct {
		name   string
		claims map[string]interface{}
	}{
		{"scope string", map[string]interface{}{"scope": "read write"}},
		{"scp array", map[string]interface{}{"scp": []string{"read", "write"}}},
	} {
		token := mint(t, "rsa2048", "rsa2048", grant.claims)
		verify := func(scopes ...string) *jwtdv1.VerifyResult {
			t.Helper()
			results, err := Verify(context.Background(), client, []string{token}, nil, "", 10*time.Second, RequiredScopes(scopes...))
			if err != nil {
				t.Fatalf("%s: %v", grant.name, err)
			}
			return results[0]
		}
		for _, granted := range [][]string{{"read"}, {"read", "write"}} {
			if r := verify(granted...); r.GetStatus() != jwtdv1.Status_STATUS_VALID {
				t.Errorf("%s: required %v: %s: %s", grant.name, granted, r.GetStatus(), r.GetReason())
			}
		}
		for _, missing := range [][]string{{"admin"}, {"read", "admin"}} {
			r := verify(missing...)
			if r.GetStatus() != jwtdv1.Status_STATUS_INSUFFICIENT_SCOPE || r.GetClaims() != nil ||
				!strings.Contains(r.GetReason(), "admin") || strings.Contains(r.GetReason(), "read") {
				t.Errorf("%s: required %v: got %s %q, want STATUS_INSUFFICIENT_SCOPE naming admin", grant.name, missing, r.GetStatus(), r.GetReason())
			}
		}
	}
}

func TestRequiredScopeWithWhitespaceIsInvalidArgument(t *testing.T) {
	token := mint(t, "rsa2048", "rsa2048", map[string]interface{}{"scope": "read write"})
	_, err := Verify(context.Background(), client, []string{token}, nil, "", 10*time.Second, RequiredScopes("read write"))
	if s := status.Convert(err); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), "required_scopes[0]") {
		t.Fatalf("got %v, want INVALID_ARGUMENT naming required_scopes[0]", err)
	}
}

func TestIssuerTypes(t *testing.T) {
	typed := map[string]interface{}{"iss": typedIssuer}
	r := verifyOne(t, mintTyped(t, "rsa2048", "rsa2048", "JWT", typed))
	if r.GetStatus() != jwtdv1.Status_STATUS_TYPE_NOT_ALLOWED || !strings.Contains(r.GetReason(), `"JWT"`) || r.GetClaims() != nil {
		t.Errorf("typ JWT: got %s %q, want STATUS_TYPE_NOT_ALLOWED naming it", r.GetStatus(), r.GetReason())
	}
	if r := verifyOne(t, mintTyped(t, "rsa2048", "rsa2048", "at+jwt", typed)); r.GetStatus() != jwtdv1.Status_STATUS_VALID {
		t.Errorf("typ at+jwt: %s: %s", r.GetStatus(), r.GetReason())
	}
	// An issuer without types accepts either.
	for _, typ := range []string{"JWT", "at+jwt"} {
		if r := verifyOne(t, mintTyped(t, "rsa2048", "rsa2048", typ, nil)); r.GetStatus() != jwtdv1.Status_STATUS_VALID {
			t.Errorf("untyped issuer, typ %s: %s: %s", typ, r.GetStatus(), r.GetReason())
		}
	}
}

func TestStatusNames(t *testing.T) {
	for s, name := range map[jwtdv1.Status]string{
		jwtdv1.Status_STATUS_REVOKED:            "STATUS_REVOKED",
		jwtdv1.Status_STATUS_TYPE_NOT_ALLOWED:   "STATUS_TYPE_NOT_ALLOWED",
		jwtdv1.Status_STATUS_INSUFFICIENT_SCOPE: "STATUS_INSUFFICIENT_SCOPE",
		jwtdv1.Status_STATUS_CLIENT_NOT_ALLOWED: "STATUS_CLIENT_NOT_ALLOWED",
	} {
		if s.String() != name {
			t.Errorf("%d reads %s, want %s", s, s, name)
		}
	}
	if jwtdv1.Status_STATUS_TYPE_NOT_ALLOWED != 14 || jwtdv1.Status_STATUS_INSUFFICIENT_SCOPE != 15 || jwtdv1.Status_STATUS_CLIENT_NOT_ALLOWED != 16 {
		t.Error("the generated stubs number the statuses unlike proto/")
	}
}

func TestBatchLimit(t *testing.T) {
	tokens := make([]string, maxBatch+1)
	for i := range tokens {
		tokens[i] = "not-a-token"
	}
	if _, err := Verify(context.Background(), client, tokens[:maxBatch], nil, "", 10*time.Second); err != nil {
		t.Fatalf("a full batch: %v", err)
	}
	_, err := Verify(context.Background(), client, tokens, nil, "", 10*time.Second)
	if s := status.Convert(err); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), fmt.Sprintf("limit of %d", maxBatch)) {
		t.Fatalf("got %v, want INVALID_ARGUMENT naming the limit", err)
	}
}

func TestDeadline(t *testing.T) {
	loaded := mint(t, "rsa2048", "rsa2048", map[string]interface{}{"iss": slowIssuer})
	if r := verifyOne(t, loaded); r.GetStatus() != jwtdv1.Status_STATUS_VALID {
		t.Fatalf("slow issuer not loaded: %s: %s", r.GetStatus(), r.GetReason())
	}
	waiting := mint(t, "rsa2048", "not-yet-published", map[string]interface{}{"iss": slowIssuer})
	_, err := Verify(context.Background(), client, []string{waiting}, nil, "", 500*time.Millisecond)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("got %v, want a passed deadline", err)
	}
	if r := verifyOne(t, mint(t, "rsa2048", "rsa2048", nil)); r.GetStatus() != jwtdv1.Status_STATUS_VALID {
		t.Fatalf("after the deadline: %s", r.GetStatus())
	}
}

func TestReflectionListsServices(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, s := range resp.GetListServicesResponse().GetService() {
		names[s.GetName()] = true
	}
	if !names["jwtd.v1.VerifierService"] || !names["grpc.health.v1.Health"] {
		t.Fatalf("services: %v", names)
	}
}

// asCaller is a client of the guarded jwtd that names itself caller.
func asCaller(t *testing.T, caller string) jwtdv1.VerifierServiceClient {
	t.Helper()
	c, err := Dial(guardedTarget, WithMetadata(metadata.Pairs(callerHeader, caller)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return jwtdv1.NewVerifierServiceClient(c)
}

var metricLabel = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// refused is the guarded jwtd's jwtd_refused_calls_total for Verify with
// this reason and caller label (0 before the first such refusal: the series
// does not exist yet).
func refused(t *testing.T, reason, caller string) int {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"method": "jwtd.v1.VerifierService/Verify", "reason": reason, "caller": caller}
	total := 0
	for _, line := range strings.Split(string(body), "\n") {
		rest := strings.TrimPrefix(line, "jwtd_refused_calls_total{")
		if rest == line {
			continue
		}
		i := strings.LastIndex(rest, "} ")
		if i < 0 {
			continue
		}
		labels := map[string]string{}
		for _, m := range metricLabel.FindAllStringSubmatch(rest[:i], -1) {
			labels[m[1]] = m[2]
		}
		same := len(labels) == len(want)
		for k, v := range want {
			same = same && labels[k] == v
		}
		if n, err := strconv.ParseFloat(rest[i+2:], 64); same && err == nil {
			total += int(n)
		}
	}
	return total
}

func needRetries(t *testing.T) {
	t.Helper()
	if !RetriesEnabled() {
		t.Fatalf("grpc-go %s retries nothing without GRPC_GO_RETRY=on (run-tests.sh sets it)", grpc.Version)
	}
}

func allValid(t *testing.T, results []*jwtdv1.VerifyResult, n int) {
	t.Helper()
	if len(results) != n {
		t.Fatalf("%d results for %d tokens", len(results), n)
	}
	for i, r := range results {
		if r.GetStatus() != jwtdv1.Status_STATUS_VALID {
			t.Fatalf("result %d: %s: %s", i, r.GetStatus(), r.GetReason())
		}
	}
}

func TestRateLimitedCallIsRetriedAfterThePushback(t *testing.T) {
	needRetries(t)
	limited := asCaller(t, "limited")
	token := mint(t, "rsa2048", "rsa2048", nil)
	first, err := Verify(context.Background(), limited, []string{token, token}, nil, "", 10*time.Second)
	if err != nil {
		t.Fatalf("the whole burst of 2: %v", err)
	}
	allValid(t, first, 2)
	before := refused(t, "rate_limited", "limited")
	// The bucket is empty: jwtd refuses this call with a pushback of about
	// 1 s (2 tokens at 2 a second); gRPC waits that long and the retry
	// passes. Its own backoff could not wait that long in 4 attempts, so
	// success here means the pushback was honoured.
	second, err := Verify(context.Background(), limited, []string{token, token}, nil, "", 10*time.Second)
	if err != nil {
		t.Fatalf("not retried after the pushback: %v", err)
	}
	allValid(t, second, 2)
	if after := refused(t, "rate_limited", "limited"); after < before+1 {
		t.Fatalf("rate_limited went from %d to %d: the call was never refused, so never retried", before, after)
	}
}

func TestBigBatchOverTheRateLimitIsRetriedToo(t *testing.T) {
	needRetries(t)
	// About 1.2 MB a call: retried only because Dial raises grpc-go's retry
	// buffer (retryBufferBytes) above its 256 KiB default.
	bulk := asCaller(t, "bulk")
	token := mint(t, "rsa2048", "rsa2048", map[string]interface{}{"padding": strings.Repeat("x", 3000)})
	batch := make([]string, bulkBatch)
	for i := range batch {
		batch[i] = token
	}
	if _, err := Verify(context.Background(), bulk, batch, nil, "", 10*time.Second); err != nil {
		t.Fatalf("the whole burst: %v", err)
	}
	before := refused(t, "rate_limited", "bulk")
	results, err := Verify(context.Background(), bulk, batch, nil, "", 10*time.Second)
	if err != nil {
		t.Fatalf("not retried after the pushback: %v", err)
	}
	allValid(t, results, bulkBatch)
	if after := refused(t, "rate_limited", "bulk"); after < before+1 {
		t.Fatalf("rate_limited went from %d to %d: the call was never refused, so never retried", before, after)
	}
}

func TestCallerNotAllowedIsPermissionDeniedAndNotRetried(t *testing.T) {
	free := asCaller(t, "free") // listed: the header is what decides
	token := mint(t, "rsa2048", "rsa2048", nil)
	ok, err := Verify(context.Background(), free, []string{token}, nil, "", 10*time.Second)
	if err != nil {
		t.Fatalf("a listed caller: %v", err)
	}
	allValid(t, ok, 1)
	before := refused(t, "not_allowed", "other")
	// A call's own metadata replaces WithMetadata's.
	ctx := metadata.AppendToOutgoingContext(context.Background(), callerHeader, "stranger")
	_, err = Verify(ctx, free, []string{token}, nil, "", 10*time.Second)
	e, isCallError := err.(*CallError)
	if !isCallError || e.Code != codes.PermissionDenied || !strings.Contains(e.Message, "not allowed") || e.PushbackMs != nil {
		t.Fatalf("got %#v, want a PERMISSION_DENIED CallError without a pushback", err)
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("status.Code(err) = %s", status.Code(err))
	}
	if after := refused(t, "not_allowed", "other"); after != before+1 {
		t.Fatalf("not_allowed went from %d to %d: PERMISSION_DENIED was retried", before, after)
	}
}

func TestBatchOverTheCallersBurstIsNotRetried(t *testing.T) {
	needRetries(t) // otherwise nothing is retried, and this proves nothing
	limited := asCaller(t, "limited")
	token := mint(t, "rsa2048", "rsa2048", nil)
	before := refused(t, "over_burst", "limited")
	_, err := Verify(context.Background(), limited, []string{token, token, token}, nil, "", 10*time.Second)
	e, isCallError := err.(*CallError)
	if !isCallError || e.Code != codes.ResourceExhausted || !strings.Contains(e.Message, "split the batch") {
		t.Fatalf("got %v, want RESOURCE_EXHAUSTED for a batch over the burst of 2", err)
	}
	if e.PushbackMs == nil || *e.PushbackMs != -1 {
		t.Fatalf("pushback %v, want -1", e.PushbackMs)
	}
	if after := refused(t, "over_burst", "limited"); after != before+1 {
		t.Fatalf("over_burst went from %d to %d: retried despite a pushback of -1", before, after)
	}
}
