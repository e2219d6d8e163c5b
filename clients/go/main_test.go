package main

// Runs Dial and Verify against the real jwtd binary (JWTD_BIN, default
// <repo>/target/release/jwtd) on an ephemeral port. Tokens are signed here
// with Go's standard library (crypto/rsa, crypto/ecdsa), independently of jwtd.

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
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	jwtdv1 "jwtdexample/gen/jwtdv1"
)

const (
	issuer     = "https://issuer.test"
	slowIssuer = "https://slow.test"
	audience   = "orders-api"
	maxBatch   = 8
)

var (
	repo   = mustAbs("../..")
	keys   = filepath.Join(repo, "tests", "data", "keys")
	client jwtdv1.VerifierServiceClient
	conn   *grpc.ClientConn
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
// runs the tests once jwtd's health says SERVING.
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
`, maxBatch, issuer, filepath.Join(keys, "jwks.json"), audience, slowIssuer, slow.URL+"/jwks.json")
	configPath := filepath.Join(dir, "jwtd.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		panic(err)
	}

	bin := os.Getenv("JWTD_BIN")
	if bin == "" {
		bin = filepath.Join(repo, "target", "release", "jwtd")
	}
	cmd := exec.Command(bin, "--log-format", "json", "--config", configPath)
	// Linux: jwtd dies with this test binary, even when a test panics.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		panic(err)
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot start jwtd (build it or set JWTD_BIN):", err)
		return 2
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()

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
			fmt.Fprintln(os.Stderr, "jwtd exited before its ready line")
			return 2
		}
		target = a
	case <-time.After(30 * time.Second):
		fmt.Fprintln(os.Stderr, "jwtd printed no ready line in 30 s")
		return 2
	}

	conn, err = Dial(target)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	client = jwtdv1.NewVerifierServiceClient(conn)
	// The ready line comes before keys fetched from a URL are loaded: wait
	// for health to report jwtd.v1.VerifierService SERVING.
	health := healthpb.NewHealthClient(conn)
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		answer, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "jwtd.v1.VerifierService"})
		cancel()
		if err == nil && answer.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if i == 300 {
			fmt.Fprintln(os.Stderr, "jwtd.v1.VerifierService not SERVING after 30 s:", answer, err)
			return 2
		}
		time.Sleep(100 * time.Millisecond)
	}
	return m.Run()
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

// mint signs an RS256 (RSA key) or ES256 (P-256 key) token.
func mint(t *testing.T, keyName, kid string, claims map[string]interface{}) string {
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
	header, _ := json.Marshal(map[string]string{"alg": alg, "kid": kid, "typ": "JWT"})
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
