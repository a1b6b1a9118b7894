package server

import (
	"net/http"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"

	"github.com/rewindhq/rewind/api/rewind/v1/rewindv1connect"
)

// served are the services the gRPC health and reflection services speak
// of.
var served = []string{rewindv1connect.EventStoreServiceName, rewindv1connect.TokenServiceName,
	rewindv1connect.ConsumerGroupServiceName}

// addGRPCServices adds the standard services gRPC tools and orchestrators
// expect:
//
//   - grpc.health.v1.Health, which, like /healthz and the Health RPC,
//     needs no token: probes (Kubernetes' grpc probe, grpc_health_probe)
//     do not carry one. It reports SERVING for "" (the whole server) and
//     for each rewind service, NOT_SERVING once shutdown begins, and
//     NotFound for any other service.
//   - gRPC server reflection (v1 and v1alpha), so that grpcurl and buf curl
//     work without the .proto files. It needs a token, of any scope: the
//     API's schema is public (it is in rewind's repository), but a server
//     should not describe itself to whoever reaches its port. Every
//     client that may call anything has a token anyway.
func (s *Server) addGRPCServices(rpcs map[string]http.Handler, opts []connect.HandlerOption) {
	if s.health == nil {
		s.health = grpchealth.NewStaticChecker(served...)
	}
	path, h := grpchealth.NewHandler(healthChecker{s.health, s}, opts...)
	rpcs[path] = h
	reflector := grpcreflect.NewStaticReflector(append([]string{grpchealth.HealthV1ServiceName}, served...)...)
	path, h = grpcreflect.NewHandlerV1(reflector, opts...)
	rpcs[path] = h
	path, h = grpcreflect.NewHandlerV1Alpha(reflector, opts...)
	rpcs[path] = h
}

// setHealth sets the status grpc.health.v1.Health reports for the server
// and each of its services.
func (s *Server) setHealth(status grpchealth.Status) {
	if s.health == nil {
		return
	}
	s.health.SetStatus("", status)
	for _, name := range served {
		s.health.SetStatus(name, status)
	}
}
