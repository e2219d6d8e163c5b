// Command jwtd-example verifies a batch of tokens with jwtd and prints one
// line per token: VALID with its subject, or the status and reason.
//
//	jwtd-example -target 127.0.0.1:50051 TOKEN [TOKEN ...]
//
// Exits 0 when every token is VALID, 1 when any is not, 2 when the call failed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	jwtdv1 "jwtdexample/gen/jwtdv1"
)

// serviceConfig retries Verify (read-only, so always safe to retry); grpc-go
// itself retries a call that failed with
//   - UNAVAILABLE (jwtd restarting, a connection reset), with exponential
//     backoff: 0.1 s, then up to 0.2 s, 0.4 s (randomised);
//   - RESOURCE_EXHAUSTED (jwtd shed the call, or the caller is over its rate
//     limit), after the grpc-retry-pushback-ms jwtd sends with it (gRFC A6):
//     the time until there is room. A negative pushback (a batch over the
//     caller's burst, which can never pass) stops the retries at once.
//
// At most 4 attempts, all within the call's one deadline. Other codes
// (PERMISSION_DENIED, INVALID_ARGUMENT, DEADLINE_EXCEEDED, ...) are never
// retried: another attempt would get the same answer. grpc-go before 1.40
// applies the policy only with GRPC_GO_RETRY=on in the environment (see
// RetriesEnabled).
const serviceConfig = `{"methodConfig": [{
  "name": [{"service": "jwtd.v1.VerifierService"}],
  "retryPolicy": {
    "maxAttempts": 4, "initialBackoff": "0.1s", "maxBackoff": "1s",
    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]
  }
}]}`

// retryBufferBytes: grpc-go keeps a call's request to replay it on a retry
// only up to this size (its default, 256 KiB, is passed by a batch of a few
// hundred tokens: such a call would silently not be retried). 8 MiB holds
// jwtd's largest request with default limits (1024 tokens of 8 KiB); the
// memory is the request the caller holds anyway, released when the call ends.
const retryBufferBytes = 8 << 20

// PushbackTrailer is the gRFC A6 trailer: how long to wait before retrying,
// in milliseconds; negative means "do not retry".
const PushbackTrailer = "grpc-retry-pushback-ms"

// jwtd's gRPC server (tonic 0.14) answers a call whose deadline passed on its
// side with CANCELLED and this message instead of DEADLINE_EXCEEDED; Verify
// reports either as DEADLINE_EXCEEDED.
const tonicTimeout = "Timeout expired"

// Dial opens the one connection a process should share for all its calls.
// Plaintext, which is right for loopback or a mesh sidecar that adds mTLS;
// use grpc.WithTransportCredentials(credentials.NewTLS(...)) otherwise.
// opts come after Dial's own, e.g. WithMetadata for the caller's identity.
func Dial(target string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	own := []grpc.DialOption{
		grpc.WithInsecure(), // grpc-go >= 1.34: grpc.WithTransportCredentials(insecure.NewCredentials())
		grpc.WithDefaultServiceConfig(serviceConfig),
		// Pings every 30 s while calls are in flight, drop the connection
		// when one is unanswered for 10 s; no pings on an idle connection,
		// which proxies and gRPC servers with default policies punish.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                30 * time.Second,
			Timeout:             10 * time.Second,
			PermitWithoutStream: false,
		}),
		grpc.WithDefaultCallOptions(
			// A full batch of 1024 tokens with their payloads can pass 4 MiB.
			grpc.MaxCallRecvMsgSize(64<<20),
			grpc.MaxRetryRPCBufferSize(retryBufferBytes),
		),
	}
	return grpc.Dial(target, append(own, opts...)...)
}

// WithMetadata sends md with every call on the connection; a call's own
// outgoing metadata (metadata.AppendToOutgoingContext) replaces a key both
// name. It is the place for the caller identity jwtd reads with
// [callers] identity = "header:NAME":
//
//	conn, err := Dial(target, WithMetadata(metadata.Pairs("x-caller", "orders-api")))
func WithMetadata(md metadata.MD) grpc.DialOption {
	md = md.Copy()
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply interface{},
		cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		own, _ := metadata.FromOutgoingContext(ctx)
		for key, values := range md {
			if len(own.Get(key)) == 0 {
				for _, value := range values {
					ctx = metadata.AppendToOutgoingContext(ctx, key, value)
				}
			}
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	})
}

// RetriesEnabled reports whether this grpc-go applies the retry policy at
// all: from 1.40 on it does by default; before 1.40 (Debian 12 ships 1.33)
// only when the process was started with GRPC_GO_RETRY=on, which grpc-go
// reads once at start-up, so no Dial option can turn it on. Without it a
// RESOURCE_EXHAUSTED or UNAVAILABLE answer is returned at once.
func RetriesEnabled() bool {
	var major, minor int
	if _, err := fmt.Sscanf(grpc.Version, "%d.%d", &major, &minor); err == nil && (major > 1 || minor >= 40) {
		return true
	}
	return strings.EqualFold(os.Getenv("GRPC_GO_RETRY"), "on")
}

// CallError is a whole-call failure (no per-token results exist). Code says
// why:
//   - codes.ResourceExhausted: jwtd shed the call (overloaded) or the caller
//     is over its rate limit, and the retries after jwtd's pushback ran out;
//     or, with a pushback of -1, a batch over the caller's burst, never
//     retried: split the batch;
//   - codes.PermissionDenied: jwtd does not allow this caller (never retried);
//   - codes.InvalidArgument: a batch over jwtd's limits.max_batch, an
//     issuer filter naming no configured issuer, or an empty audience or
//     required scope, or a scope with whitespace (never retried);
//   - codes.DeadlineExceeded, or codes.Unavailable after the retries ran out.
//
// status.Code(err) and status.Convert(err) work on it as on any gRPC error.
type CallError struct {
	Code    codes.Code
	Message string
	// PushbackMs is the last answer's grpc-retry-pushback-ms: how long jwtd
	// asked the caller to wait, -1 for "do not retry"; nil when jwtd sent none.
	PushbackMs *int
}

func (e *CallError) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// GRPCStatus lets the status package read the error's code and message.
func (e *CallError) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// pushbackOf reads the pushback trailer, or nil without a readable one.
func pushbackOf(trailer metadata.MD) *int {
	values := trailer.Get(PushbackTrailer)
	if len(values) != 1 {
		return nil
	}
	ms, err := strconv.Atoi(values[0])
	if err != nil {
		return nil
	}
	return &ms
}

// VerifyOption adds to the request Verify sends (RequiredScopes).
type VerifyOption func(*jwtdv1.VerifyRequest)

// RequiredScopes makes each token grant every one of scopes, on top of the
// issuer's configured required_scopes: jwtd reads the token's scope claim
// (space-separated) or scp (a string or an array of strings), and answers a
// token lacking one STATUS_INSUFFICIENT_SCOPE with a reason naming the first
// scope missing. Name each scope on its own: a scope that is empty or holds
// whitespace fails the whole call with InvalidArgument.
//
//	results, err := Verify(ctx, client, tokens, nil, "", 2*time.Second, RequiredScopes("orders:read"))
func RequiredScopes(scopes ...string) VerifyOption {
	scopes = append([]string(nil), scopes...)
	return func(r *jwtdv1.VerifyRequest) {
		r.RequiredScopes = append(r.RequiredScopes, scopes...)
	}
}

// Verify sends one batch with a deadline; ctx carries any request metadata
// (a traceparent, a caller identity). audiences and issuer only narrow
// jwtd's configured policy; opts add to the request (RequiredScopes). A
// non-nil error is a whole-call failure, a *CallError (status.Code(err)
// tells which); rejected tokens are results, not errors, and are never
// retried: the same token gets the same answer (only
// STATUS_KEYS_UNAVAILABLE may change later).
func Verify(ctx context.Context, client jwtdv1.VerifierServiceClient, tokens, audiences []string, issuer string, timeout time.Duration, opts ...VerifyOption) ([]*jwtdv1.VerifyResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req := &jwtdv1.VerifyRequest{Tokens: tokens, Audiences: audiences, Issuer: issuer}
	for _, opt := range opts {
		opt(req)
	}
	var trailer metadata.MD
	resp, err := client.Verify(ctx, req, grpc.Trailer(&trailer))
	if err != nil {
		s := status.Convert(err)
		code := s.Code()
		if code == codes.Canceled && s.Message() == tonicTimeout {
			code = codes.DeadlineExceeded
		}
		return nil, &CallError{Code: code, Message: s.Message(), PushbackMs: pushbackOf(trailer)}
	}
	return resp.GetResults(), nil
}

func main() {
	target := flag.String("target", "127.0.0.1:50051", "jwtd's address")
	issuer := flag.String("issuer", "", "accept only this configured issuer")
	audience := flag.String("audience", "", "comma-separated audiences the tokens must carry one of")
	scope := flag.String("scope", "", "comma-separated scopes the tokens must all grant")
	timeout := flag.Duration("timeout", 2*time.Second, "deadline of the call")
	flag.Parse()

	if !RetriesEnabled() {
		fmt.Fprintf(os.Stderr, "warning: grpc-go %s retries nothing without GRPC_GO_RETRY=on\n", grpc.Version)
	}
	conn, err := Dial(*target)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(2)
	}
	defer conn.Close()

	var audiences []string
	if *audience != "" {
		audiences = strings.Split(*audience, ",")
	}
	var opts []VerifyOption
	if *scope != "" {
		opts = append(opts, RequiredScopes(strings.Split(*scope, ",")...))
	}
	results, err := Verify(context.Background(), jwtdv1.NewVerifierServiceClient(conn), flag.Args(), audiences, *issuer, *timeout, opts...)
	if err != nil {
		s := status.Convert(err)
		fmt.Fprintf(os.Stderr, "call failed: %s: %s\n", s.Code(), s.Message())
		os.Exit(2)
	}
	code := 0
	for i, r := range results {
		if r.GetStatus() == jwtdv1.Status_STATUS_VALID {
			c := r.GetClaims()
			fmt.Printf("%d: VALID sub=%s iss=%s alg=%s\n", i, c.GetSubject(), c.GetIssuer(), c.GetAlgorithm())
		} else {
			fmt.Printf("%d: %s: %s\n", i, strings.TrimPrefix(r.GetStatus().String(), "STATUS_"), r.GetReason())
			code = 1
		}
	}
	os.Exit(code)
}
