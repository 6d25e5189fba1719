# kvs — common tasks. `make run` starts a local three-node cluster,
# `make test` runs every test that needs no Docker engine.

GO      ?= go
BIN     := bin
IMAGE   ?= kvs:dev
# docker compose v2 plugin when present, else the v1 docker-compose binary.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
COMPOSE_FILE := deploy/docker-compose.yml
COMPOSE_PROJECT ?= kvs

.PHONY: all build static run test test-short test-security test-docker bench image up down fmt vet clean

all: build

## build: the kvs binary for this machine, in bin/kvs
build:
	$(GO) build -o $(BIN)/kvs ./cmd/kvs

## static: a static linux binary for the image, in bin/kvs-static
static:
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/kvs-static ./cmd/kvs

## run: a local three-node cluster on HTTP 8081-8083 (Ctrl-C stops it)
run: build
	./$(BIN)/kvs dev --nodes 3

## test: unit, in-process cluster and process (kill -9) tests, race detector on
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

# SECURITY_TESTS: the security and bad-input suite (README, "The security suite"),
# one line per concern. They run in `make test` too.
SECURITY_TESTS := \
	TestServeFlags TestListenSecurityLog TestProcessProtectedDefaults \
	TestSecretRequiredOnClients TestUserPasswordsGiven TestSysSeesNothingOfTheApplicationAccount TestSysMayOnlyMonitor TestNoSecretAnonymousIsWatch TestRouteWithoutSecretRefused TestRoutePortRefusesClientCredentials TestWatchReceivesGossipAndEvents TestWatchRefusedPublishOnInternalSubjects TestWatchRefusedSubscribeBeyondGossipAndEvents TestConfigUserPasswords TestServeNATSPasswordFlags TestNATSCredentialsCommand TestProcessNATSUsers \
	TestTLSClusterRoutesRequestsAndJetStream TestTLSRouteFromOtherCARefused TestTLSRouteFromPlaintextRefused TestTLSClientPort TestTLSValidate TestServeTLSFlags TestClientCA TestProcessTLS TestTLSSetCertificate TestProcessTLSReload TestCertCommands \
	TestAccess TestTokenComparisonIsConstantTime TestNewRejectsTokens TestServeClientTokenFlags TestCheckToken TestClientTokenFlags TestProcessClientTokens TestSetClientTokens TestProcessClientTokensReload \
	TestIsTransient TestTransientWALWrite TestTransientRotation TestTransientFlush TestTransientCompaction TestTransientManifestDirSync TestStoreWritable TestReadyzStoreUnwritable TestServerErrorsHideInternals TestRequestIDFromClient TestConnLimiterWaits TestConnLimiterClosesIdle TestProcessOutOfFileDescriptors TestProcessMaxConnsHoldsIdleConnectionsOff \
	TestHintStoreCaps TestHintFloodStopsAtCap TestHintWindow TestHintsOfADownTargetExpire TestPutBodyMemoryFollowsBytesSent TestPutBodyGrows TestScanRequestsBounded \
	TestValidSecret TestCheckSecret TestAdminSecretFile \
	TestChangeFeedKeys TestNATSChangeFeed TestSelfHintRefusalWarnsOncePerMinute TestFirstRouteDialQuietAtStart TestRouteDialReportsOncePerMinute \
	TestGatewayImportsNeitherStorageNorBus TestForgedHeartbeatsChangeNoMembership TestPprofServesProfiles TestCheckPprofAddr

## test-security: only the security and bad-input suite (a subset of make test)
SECURITY_RE = ^($(subst $(eval) ,|,$(strip $(SECURITY_TESTS))))$$
test-security:
	@want=$(words $(SECURITY_TESTS)); got=$$($(GO) test -list '$(SECURITY_RE)' ./... | grep -c '^Test'); \
	  [ "$$got" = "$$want" ] || { echo "test-security: found $$got of the $$want tests in SECURITY_TESTS: one was renamed or removed"; exit 1; }
	$(GO) test -race -count=1 -timeout 10m -run '$(SECURITY_RE)' ./...

## test-short: the quick subset (no process tests)
test-short:
	$(GO) test -short -count=1 ./...

## test-docker: the compose cluster under docker stop/start/pause (needs a Docker engine)
test-docker: image
	$(GO) test -tags docker -count=1 -v -timeout 15m ./deploy/...

## bench: load a running cluster on 8081-8083 (start one with `make run`)
bench: build
	./$(BIN)/kvs bench --targets http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083 --op put --duration 15s
	./$(BIN)/kvs bench --targets http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083 --op get --duration 15s

## image: the FROM-scratch image kvs:dev around bin/kvs-static
image: static
	docker build -q -f deploy/Dockerfile -t $(IMAGE) .

## up: the three-node compose cluster (HTTP 8081-8083, NATS 4222-4224)
up: image
	$(COMPOSE) -p $(COMPOSE_PROJECT) -f $(COMPOSE_FILE) up -d

## down: stop the compose cluster (node4 of the "join" profile too) and remove its volumes
down:
	$(COMPOSE) -p $(COMPOSE_PROJECT) -f $(COMPOSE_FILE) --profile join down -v

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

clean:
	rm -rf $(BIN)
