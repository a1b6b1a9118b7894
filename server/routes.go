package server

import (
	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/reflect/protoreflect"

	rewindv1 "github.com/rewindhq/rewind/api/rewind/v1"
	"github.com/rewindhq/rewind/api/rewind/v1/rewindv1connect"
)

// route describes one procedure the server serves, /SERVICE/METHOD.
type route struct {
	service string             // "/SERVICE/", the key of its handler
	stream  connect.StreamType // unary, server stream or bidirectional
	// readOnly procedures may also be called with GET.
	readOnly bool
	// public procedures need no token: the health checks.
	public bool
	// longLived procedures may outlive their token: they end when it is
	// revoked or expires.
	longLived bool
	// foreign procedures are the standard gRPC services (health,
	// reflection): their streams end when shutdown begins, as ours do.
	foreign bool
}

// The paths of the standard gRPC services the server also serves.
const (
	healthService     = "/" + grpchealth.HealthV1ServiceName + "/"
	reflectionV1      = "/" + grpcreflect.ReflectV1ServiceName + "/"
	reflectionV1Alpha = "/" + grpcreflect.ReflectV1AlphaServiceName + "/"
)

// routes holds every procedure the server serves.
var routes = func() map[string]*route {
	out := map[string]*route{}
	services := rewindv1.File_rewind_v1_rewind_proto.Services()
	for i := range services.Len() {
		methods := services.Get(i).Methods()
		for j := range methods.Len() {
			m := methods.Get(j)
			service := "/" + string(services.Get(i).FullName()) + "/"
			out[service+string(m.Name())] = &route{service: service, stream: streamType(m)}
		}
	}
	for _, p := range []string{
		rewindv1connect.EventStoreServiceReadStreamProcedure, rewindv1connect.EventStoreServiceReadAllProcedure,
		rewindv1connect.EventStoreServiceGetStreamInfoProcedure, rewindv1connect.EventStoreServiceListStreamsProcedure,
		rewindv1connect.EventStoreServiceGetServerInfoProcedure, rewindv1connect.EventStoreServiceHealthProcedure,
		rewindv1connect.TokenServiceListTokensProcedure, rewindv1connect.ConsumerGroupServiceListGroupsProcedure,
		rewindv1connect.ConsumerGroupServiceGroupInfoProcedure, rewindv1connect.ConsumerGroupServiceListParkedProcedure,
	} {
		out[p].readOnly = true
	}
	out[rewindv1connect.EventStoreServiceHealthProcedure].public = true
	out[rewindv1connect.EventStoreServiceSubscribeProcedure].longLived = true
	out[rewindv1connect.EventStoreServiceAppendStreamProcedure].longLived = true
	out[rewindv1connect.ConsumerGroupServiceConsumeProcedure].longLived = true

	out[healthService+"Check"] = &route{service: healthService, stream: connect.StreamTypeUnary,
		public: true, foreign: true}
	out[healthService+"Watch"] = &route{service: healthService, stream: connect.StreamTypeServer,
		public: true, foreign: true}
	for _, s := range []string{reflectionV1, reflectionV1Alpha} {
		out[s+"ServerReflectionInfo"] = &route{service: s, stream: connect.StreamTypeBidi, foreign: true}
	}
	return out
}()

func streamType(m protoreflect.MethodDescriptor) connect.StreamType {
	var t connect.StreamType
	if m.IsStreamingClient() {
		t |= connect.StreamTypeClient
	}
	if m.IsStreamingServer() {
		t |= connect.StreamTypeServer
	}
	return t
}

// oneMessage reports whether the procedure takes exactly one request
// message (unary and server-streaming procedures).
func (r *route) oneMessage() bool { return r.stream&connect.StreamTypeClient == 0 }

// streaming reports whether the procedure streams in either direction.
func (r *route) streaming() bool { return r.stream != connect.StreamTypeUnary }
