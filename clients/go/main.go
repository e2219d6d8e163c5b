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
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	jwtdv1 "jwtdexample/gen/jwtdv1"
)

// serviceConfig retries Verify (read-only, so always safe to retry) when it
// fails with UNAVAILABLE, with exponential backoff, within the deadline.
// grpc-go before 1.40 applies it only with GRPC_GO_RETRY=on in the environment.
const serviceConfig = `{"methodConfig": [{
  "name": [{"service": "jwtd.v1.VerifierService"}],
  "retryPolicy": {
    "maxAttempts": 4, "initialBackoff": "0.1s", "maxBackoff": "1s",
    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]
  }
}]}`

// jwtd's gRPC server (tonic 0.14) answers a call whose deadline passed on its
// side with CANCELLED and this message instead of DEADLINE_EXCEEDED; Verify
// reports either as DEADLINE_EXCEEDED.
const tonicTimeout = "Timeout expired"

// Dial opens the one connection a process should share for all its calls.
// Plaintext, which is right for loopback or a mesh sidecar that adds mTLS;
// use grpc.WithTransportCredentials(credentials.NewTLS(...)) otherwise.
func Dial(target string) (*grpc.ClientConn, error) {
	return grpc.Dial(target,
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
		// A full batch of 1024 tokens with their payloads can pass 4 MiB.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
	)
}

// Verify sends one batch with a deadline and, when traceparent is not
// empty, the caller's W3C trace context as request metadata. A non-nil error
// is a whole-call failure (status.Code(err) tells which); rejected tokens
// are results, not errors.
func Verify(ctx context.Context, client jwtdv1.VerifierServiceClient, tokens, audiences []string, issuer string, timeout time.Duration) ([]*jwtdv1.VerifyResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := client.Verify(ctx, &jwtdv1.VerifyRequest{Tokens: tokens, Audiences: audiences, Issuer: issuer})
	if s := status.Convert(err); s.Code() == codes.Canceled && s.Message() == tonicTimeout {
		return nil, status.Error(codes.DeadlineExceeded, s.Message())
	}
	if err != nil {
		return nil, err
	}
	return resp.GetResults(), nil
}

func main() {
	target := flag.String("target", "127.0.0.1:50051", "jwtd's address")
	issuer := flag.String("issuer", "", "accept only this configured issuer")
	audience := flag.String("audience", "", "comma-separated audiences the tokens must carry one of")
	timeout := flag.Duration("timeout", 2*time.Second, "deadline of the call")
	flag.Parse()

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
	results, err := Verify(context.Background(), jwtdv1.NewVerifierServiceClient(conn), flag.Args(), audiences, *issuer, *timeout)
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
