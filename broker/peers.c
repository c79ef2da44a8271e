#include "peers.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Copies [p, p + len) into out[KYU_ENDPOINT_MAX]; false when empty or too long. */
static bool copy_part(char *out, const char *p, size_t len)
{
    if (len == 0 || len >= KYU_ENDPOINT_MAX)
        return false;
    memcpy(out, p, len);
    out[len] = '\0';
    return true;
}

/* HOST:PORT with a non-empty host and a port of 1..65535 (digits only). */
static bool hostport_ok(const char *hp)
{
    const char *colon = strrchr(hp, ':');
    if (!colon || colon == hp || !colon[1] || strlen(colon + 1) > 5 || strchr(hp, '/') ||
        strchr(hp, ' '))
        return false;
    for (const char *d = colon + 1; *d; d++)
        if (*d < '0' || *d > '9')
            return false;
    long port = strtol(colon + 1, NULL, 10);
    return port >= 1 && port <= 65535;
}

kyu_code_t kyu_peer_parse(const char *spec, kyu_peer_t *out, kyu_err_t *err)
{
    kyu_peer_t p = {0};
    const char *c1 = strchr(spec, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
    char idbuf[24] = "", hostport[KYU_ENDPOINT_MAX];
    char *end = NULL;
    bool ok = c1 && c2 && (size_t)(c1 - spec) < sizeof idbuf && c1 > spec;
    if (ok) {
        memcpy(idbuf, spec, (size_t)(c1 - spec));
        idbuf[c1 - spec] = '\0';
        unsigned long long id = strtoull(idbuf, &end, 10);
        p.id = id;
        ok = *end == '\0' && idbuf[0] != '-' && id >= 1 && id <= INT64_MAX &&
             copy_part(hostport, c1 + 1, (size_t)(c2 - c1 - 1)) &&
             copy_part(p.client, c2 + 1, strlen(c2 + 1)) && hostport_ok(hostport) &&
             strlen(hostport) + 6 < KYU_ENDPOINT_MAX && strchr(p.client, ',') == NULL &&
             strstr(p.client, "://") != NULL && strchr(p.client, ' ') == NULL;
    }
    if (!ok)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "bad peer '%.300s': expected ID,RAFT_HOST:PORT,CLIENT_ENDPOINT with ID "
                           "a positive integer, PORT 1..65535 and an endpoint like "
                           "tcp://HOST:PORT",
                           spec);
    /* Length checked above: "tcp://" + hostport fits. */
    memcpy(p.raft, "tcp://", 6);
    memcpy(p.raft + 6, hostport, strlen(hostport) + 1);
    *out = p;
    return KYU_OK;
}

kyu_code_t kyu_peers_add(kyu_peers_t *self, const char *spec, kyu_err_t *err)
{
    if (self->n >= KYU_RAFT_MAX_NODES)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "at most %d peers", KYU_RAFT_MAX_NODES);
    kyu_peer_t p;
    kyu_code_t rc = kyu_peer_parse(spec, &p, err);
    if (rc != KYU_OK)
        return rc;
    if (kyu_peers_find(self, p.id))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "peer id %llu given twice",
                           (unsigned long long)p.id);
    self->peers[self->n++] = p;
    return KYU_OK;
}

kyu_code_t kyu_peers_add_list(kyu_peers_t *self, const char *list, kyu_err_t *err)
{
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ";");
        if (len > 0) {
            char spec[3 * KYU_ENDPOINT_MAX];
            if (len >= sizeof spec)
                return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "peer entry too long");
            memcpy(spec, p, len);
            spec[len] = '\0';
            kyu_code_t rc = kyu_peers_add(self, spec, err);
            if (rc != KYU_OK)
                return rc;
        }
        p += len + (p[len] == ';');
    }
    return KYU_OK;
}

const kyu_peer_t *kyu_peers_find(const kyu_peers_t *self, uint64_t id)
{
    for (size_t i = 0; i < self->n; i++)
        if (self->peers[i].id == id)
            return &self->peers[i];
    return NULL;
}

void kyu_endpoint_for_bind(const char *endpoint, char *out, size_t cap)
{
    snprintf(out, cap, "%s", endpoint);
    const char *host = strncmp(endpoint, "tcp://", 6) == 0 ? endpoint + 6 : NULL;
    const char *colon = host ? strrchr(host, ':') : NULL;
    if (!colon || colon == host || host[0] == '[' || (size_t)(colon - host) >= 256)
        return; /* not tcp, no port, or a bracketed IPv6 literal */
    char name[256];
    memcpy(name, host, (size_t)(colon - host));
    name[colon - host] = '\0';
    struct in6_addr a6;
    if (strcmp(name, "*") == 0 || inet_pton(AF_INET, name, &a6) == 1)
        return;
    static const int families[] = {AF_INET, AF_INET6};
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        struct addrinfo hints = {.ai_family = families[i], .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        if (getaddrinfo(name, NULL, &hints, &res) != 0 || !res)
            continue;
        char ip[INET6_ADDRSTRLEN] = "";
        const void *addr =
            families[i] == AF_INET
                ? (const void *)&((const struct sockaddr_in *)res->ai_addr)->sin_addr
                : (const void *)&((const struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
        bool ok = inet_ntop(families[i], addr, ip, sizeof ip) != NULL;
        freeaddrinfo(res);
        if (ok) {
            snprintf(out, cap, families[i] == AF_INET ? "tcp://%s%s" : "tcp://[%s]%s", ip, colon);
            return;
        }
    }
}
