// Command testpod is the workload of the real-cluster tier's pods (scripts/cluster-binaries.sh).
//
//	testpod serve                      TCP echo on :7000, UDP echo on :7001 (forever)
//	testpod probe ADDR PAYLOAD         one TCP echo, one UDP echo, one ICMP echo carrying PAYLOAD to
//	                                   ADDR; prints "tcp ok|fail", "udp ok|fail", "icmp ok|fail"
//	                                   and exits 0 only if all three came back with the payload.
//	testpod stream ADDR PAYLOAD        until SIGTERM: one TCP connection echoing a numbered message
//	                                   every 50 ms, and a numbered UDP datagram every 20 ms; then
//	                                   prints one JSON line (messages, datagrams sent/echoed, the
//	                                   longest TCP stall and UDP gap, whether TCP broke).
//
// Static, no libc: the tier imports it into each node's containerd as a one-layer image.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func serve() {
	ln, err := net.Listen("tcp", ":7000")
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen tcp:", err)
		os.Exit(1)
	}
	pc, err := net.ListenPacket("udp", ":7001")
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen udp:", err)
		os.Exit(1)
	}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				continue
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	fmt.Println("serving tcp :7000 udp :7001")
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go func(c net.Conn) {
			defer c.Close()
			// An idle deadline, renewed on every read: a stream (testpod stream) lasts minutes.
			buf := make([]byte, 65536)
			for {
				c.SetDeadline(time.Now().Add(180 * time.Second))
				n, err := c.Read(buf)
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}(c)
	}
}

func probeTCP(addr string, payload []byte) error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, "7000"), 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(payload); err != nil {
		return err
	}
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("echo differs")
	}
	return nil
}

func probeUDP(addr string, payload []byte) error {
	c, err := net.Dial("udp", net.JoinHostPort(addr, "7001"))
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 65536)
	// UDP may lose the first datagram while a route or peer settles: three tries.
	for i := 0; i < 3; i++ {
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write(payload); err != nil {
			return err
		}
		n, err := c.Read(buf)
		if err == nil && bytes.Equal(buf[:n], payload) {
			return nil
		}
	}
	return fmt.Errorf("no echo")
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func probeICMP(addr string, payload []byte) error {
	// A raw socket: containerd's default capabilities include CAP_NET_RAW.
	c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return err
	}
	defer c.Close()
	id := uint16(os.Getpid())
	msg := make([]byte, 8+len(payload))
	msg[0] = 8
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], 1)
	copy(msg[8:], payload)
	binary.BigEndian.PutUint16(msg[2:], checksum(msg))
	dst := &net.IPAddr{IP: net.ParseIP(addr)}
	buf := make([]byte, 65536)
	for i := 0; i < 3; i++ {
		if _, err := c.WriteTo(msg, dst); err != nil {
			return err
		}
		c.SetDeadline(time.Now().Add(time.Second))
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				break
			}
			if n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id && bytes.Equal(buf[8:n], payload) {
				return nil
			}
		}
	}
	return fmt.Errorf("no echo reply")
}

// streamReport is what `testpod stream` prints when it is told to stop.
type streamReport struct {
	TCPMessages    int64  `json:"tcpMessages"`
	TCPBroken      bool   `json:"tcpBroken"`
	TCPError       string `json:"tcpError,omitempty"`
	TCPMaxStallMs  int64  `json:"tcpMaxStallMs"`
	UDPSent        int64  `json:"udpSent"`
	UDPEchoed      int64  `json:"udpEchoed"`
	UDPLost        int64  `json:"udpLost"`
	UDPMaxGapCount int64  `json:"udpMaxGapCount"`
	UDPIntervalMs  int64  `json:"udpIntervalMs"`
	// Liveness at the stop: ms since the last TCP echo, and datagrams sent after the last echoed one.
	TCPLastEchoAgoMs int64 `json:"tcpLastEchoAgoMs"`
	UDPUnechoedTail  int64 `json:"udpUnechoedTail"`
}

// Stream rates: enough to time an outage to 20 ms without flooding the tier's underlay capture.
const (
	tcpEvery = 50 * time.Millisecond
	udpEvery = 20 * time.Millisecond
)

// stream runs one TCP connection and a numbered UDP flow until SIGTERM. A TCP error (reset,
// timeout of 120 s on one echo, wrong bytes) ends the TCP side for good: a broken connection is
// what the caller must see, never a silent reconnect.
func stream(addr string, payload []byte) {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	var rep streamReport
	var mu sync.Mutex
	lastEcho := time.Now()
	done := make(chan struct{})
	go func() {
		fail := func(err error) {
			mu.Lock()
			rep.TCPBroken, rep.TCPError = true, err.Error()
			mu.Unlock()
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, "7000"), 5*time.Second)
		if err != nil {
			fail(err)
			return
		}
		defer c.Close()
		got := make([]byte, 0, 256)
		for seq := int64(0); ; seq++ {
			select {
			case <-done:
				return
			default:
			}
			msg := []byte(fmt.Sprintf("%s tcp %012d\n", payload, seq))
			t0 := time.Now()
			c.SetDeadline(t0.Add(120 * time.Second))
			if _, err := c.Write(msg); err != nil {
				fail(err)
				return
			}
			got = got[:len(msg)]
			if _, err := io.ReadFull(c, got); err != nil {
				fail(err)
				return
			}
			if !bytes.Equal(got, msg) {
				fail(fmt.Errorf("echo of message %d differs", seq))
				return
			}
			stall := time.Since(t0).Milliseconds()
			mu.Lock()
			rep.TCPMessages++
			lastEcho = time.Now()
			if stall > rep.TCPMaxStallMs {
				rep.TCPMaxStallMs = stall
			}
			mu.Unlock()
			time.Sleep(tcpEvery)
		}
	}()
	u, err := net.Dial("udp", net.JoinHostPort(addr, "7001"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "udp:", err)
		os.Exit(1)
	}
	var sent int64
	seen := make(map[int64]bool)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := u.Read(buf)
			if err != nil {
				return
			}
			var seq int64
			if _, err := fmt.Sscanf(string(buf[:n]), string(payload)+" udp %d", &seq); err == nil {
				mu.Lock()
				seen[seq] = true
				mu.Unlock()
			}
		}
	}()
	tick := time.NewTicker(udpEvery)
loop:
	for {
		select {
		case <-stop:
			break loop
		case <-tick.C:
			u.Write([]byte(fmt.Sprintf("%s udp %012d", payload, atomic.LoadInt64(&sent))))
			atomic.AddInt64(&sent, 1)
		}
	}
	tick.Stop()
	mu.Lock()
	rep.TCPLastEchoAgoMs = time.Since(lastEcho).Milliseconds()
	mu.Unlock()
	close(done)
	// Echoes still in flight.
	time.Sleep(time.Second)
	u.Close()
	mu.Lock()
	rep.UDPSent = atomic.LoadInt64(&sent)
	rep.UDPIntervalMs = udpEvery.Milliseconds()
	var run int64
	for i := int64(0); i < rep.UDPSent; i++ {
		if seen[i] {
			rep.UDPEchoed++
			run = 0
			continue
		}
		run++
		if run > rep.UDPMaxGapCount {
			rep.UDPMaxGapCount = run
		}
	}
	rep.UDPLost = rep.UDPSent - rep.UDPEchoed
	rep.UDPUnechoedTail = run
	out, _ := json.Marshal(rep)
	mu.Unlock()
	fmt.Println(string(out))
	// The TCP goroutine may sit in a 120 s read: the report is out, do not wait for it.
	os.Exit(0)
}

func main() {
	if len(os.Args) == 4 && os.Args[1] == "stream" {
		stream(os.Args[2], []byte(os.Args[3]))
		return
	}
	if len(os.Args) >= 2 && os.Args[1] == "serve" {
		serve()
		return
	}
	if len(os.Args) == 4 && os.Args[1] == "probe" {
		addr, payload := os.Args[2], []byte(os.Args[3])
		ok := true
		for _, p := range []struct {
			name string
			f    func(string, []byte) error
		}{{"tcp", probeTCP}, {"udp", probeUDP}, {"icmp", probeICMP}} {
			if err := p.f(addr, payload); err != nil {
				fmt.Printf("%s fail %v\n", p.name, err)
				ok = false
			} else {
				fmt.Printf("%s ok\n", p.name)
			}
		}
		if !ok {
			os.Exit(1)
		}
		return
	}
	fmt.Fprintln(os.Stderr, "usage: testpod serve | testpod probe ADDR PAYLOAD | testpod stream ADDR PAYLOAD")
	os.Exit(2)
}
