// The Go centrifuge library (Debian's golang-github-centrifugal-centrifuge-dev, v0.15, the
// library Centrifugo is built on) as a benchmark peer: a WebSocket endpoint speaking its JSON
// protocol (v1 in this version: {"id":1,"params":{}} connects, {"id":2,"method":1,"params":
// {"channel":"benchK"}} subscribes, the reply "id":2 is the ready marker) and POST
// /publish?ch=K, whose body (JSON) goes to every subscriber of benchK through node.Publish.
// Memory broker, no history (as Tidings' S4 config), anonymous connections.
//
//	GOMAXPROCS=1 ./go-centrifuge --port P   (run.py pins it to one core)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/centrifugal/centrifuge"
)

func main() {
	host := flag.String("host", "127.0.0.1", "listen address")
	port := flag.Int("port", 8000, "listen port")
	flag.Parse()

	cfg := centrifuge.DefaultConfig
	cfg.LogLevel = centrifuge.LogLevelError
	cfg.LogHandler = func(e centrifuge.LogEntry) { log.Printf("%s: %v", e.Message, e.Fields) }
	node, err := centrifuge.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	node.OnConnecting(func(ctx context.Context, e centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		return centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{UserID: ""}}, nil
	})
	node.OnConnect(func(client *centrifuge.Client) {
		client.OnSubscribe(func(e centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
			cb(centrifuge.SubscribeReply{}, nil)
		})
	})
	if err := node.Run(); err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.Handle("/connection/websocket", centrifuge.NewWebsocketHandler(node,
		centrifuge.WebsocketConfig{CheckOrigin: func(r *http.Request) bool { return true }}))
	mux.HandleFunc("/publish", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if _, err := node.Publish("bench"+r.URL.Query().Get("ch"), body); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})

	addr := fmt.Sprintf("%s:%d", *host, *port)
	server := &http.Server{Addr: addr, Handler: mux}
	go func() {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		<-sigs
		_ = server.Close()
		_ = node.Shutdown(context.Background())
	}()
	fmt.Printf("go-centrifuge peer listening on %s\n", addr)
	if err := server.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
