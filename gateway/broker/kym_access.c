/*
 * kym_access: a Mosquitto 2.0 plugin with KYM's access rules as patterns on the certificate's
 * identity (the username, with `use_identity_as_username true`), for the Mosquitto that
 * `kym serve` manages. Part of KYM (CONTRACT.md section 10, "MQTT access").
 *
 * Why: Mosquitto's `acl_file` never refuses a SUBSCRIBE, and its dynamic-security plugin has no
 * per-client patterns in 2.0.11, so it needs one role and one client entry per device, and every
 * change rewrites its whole JSON file while the broker waits (11 s at a million devices, longer
 * than a registration may take). These rules need no entry per device: a device is whoever holds
 * a certificate of the device CA that is not revoked (the listener's CRL).
 *
 * - `kym-gateway-<n>`: subscribe to the shared orders filter only, receive every device's orders,
 *   publish every device's results.
 * - `kym-broker-admin-<n>`: publish to `$CONTROL/kym/v1/kick` (a device id as the payload: that
 *   device's live connections end and it may do nothing more until the broker restarts, which
 *   is how a revocation reaches a live session even if the device reconnects before the CRL
 *   reload takes effect; a restarted broker reads the CRL, which refuses it from then on).
 * - anyone else, a device `<id>`: publish to `kym/v1/devices/<id>/orders` only, subscribe to and
 *   receive `kym/v1/devices/<id>/results` only (the exact filter, no wildcard, no `$share`).
 * - unsubscribing is always allowed; everything else is refused (0x80 in the SUBACK).
 * - a retained message is delivered to nobody: KYM retains nothing (`retain_available false`),
 *   and one stored before that (in the persistence file) would be dealt to every gateway worker
 *   at each subscription.
 * - a client whose certificate is in the CRL (`plugin_opt_crlfile`, read again within a second
 *   of a change) may do nothing: Mosquitto checks the CRL only in the TLS handshake, so a
 *   connection opened before a certificate was superseded by a rotation could CONNECT after it
 *   as the device and read its results (a revoked device is refused by its id, see the kick).
 *
 * Built by `gateway/broker/plugin.py` with the system's C compiler; it declares the parts of
 * Mosquitto's plugin interface (version 5, Mosquitto 2.0) it uses instead of including
 * mosquitto_broker.h, so no development package is needed.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MOSQ_EVT_ACL_CHECK 2
#define MOSQ_EVT_CONTROL 6
#define MOSQ_ERR_SUCCESS 0
#define MOSQ_ERR_NOMEM 1
#define MOSQ_ERR_INVAL 3
#define MOSQ_ERR_ACL_DENIED 12
#define MOSQ_ACL_READ 0x01
#define MOSQ_ACL_WRITE 0x02
#define MOSQ_ACL_SUBSCRIBE 0x04
#define MOSQ_ACL_UNSUBSCRIBE 0x08
#define MOSQ_LOG_NOTICE 0x02

typedef struct mosquitto_plugin_id_t mosquitto_plugin_id_t;
struct mosquitto;
struct mosquitto_opt {
	char *key;
	char *value;
};
/* struct mosquitto_evt_acl_check of mosquitto_broker.h (2.0) */
struct kym_evt_acl_check {
	void *future;
	struct mosquitto *client;
	const char *topic;
	const void *payload;
	void *properties;
	int access;
	uint32_t payloadlen;
	uint8_t qos;
	bool retain;
	void *future2[4];
};
/* struct mosquitto_evt_control of mosquitto_broker.h (2.0) */
struct kym_evt_control {
	void *future;
	struct mosquitto *client;
	const char *topic;
	const void *payload;
	const void *properties;
	char *reason_string;
	uint32_t payloadlen;
	uint8_t qos;
	uint8_t reason_code;
	bool retain;
	void *future2[4];
};
typedef int (*kym_callback)(int event, void *event_data, void *userdata);
int mosquitto_callback_register(mosquitto_plugin_id_t *identifier, int event,
		kym_callback cb_func, const void *event_data, void *userdata);
int mosquitto_callback_unregister(mosquitto_plugin_id_t *identifier, int event,
		kym_callback cb_func, const void *event_data);
const char *mosquitto_client_username(const struct mosquitto *client);
void *mosquitto_client_certificate(const struct mosquitto *client);
int mosquitto_kick_client_by_username(const char *username, bool with_will);
void mosquitto_log_printf(int level, const char *fmt, ...);

/* OpenSSL's libcrypto, which the Mosquitto binary links (declared, not included, as above). */
typedef struct x509_st X509;
typedef struct X509_crl_st X509_CRL;
typedef struct X509_name_st X509_NAME;
typedef struct x509_revoked_st X509_REVOKED;
typedef struct asn1_string_st ASN1_INTEGER;
X509_CRL *PEM_read_X509_CRL(FILE *fp, X509_CRL **crl, void *password_cb, void *u);
void X509_CRL_free(X509_CRL *crl);
int X509_CRL_get0_by_serial(X509_CRL *crl, X509_REVOKED **entry, const ASN1_INTEGER *serial);
X509_NAME *X509_CRL_get_issuer(const X509_CRL *crl);
X509_NAME *X509_get_issuer_name(const X509 *cert);
int X509_NAME_cmp(const X509_NAME *a, const X509_NAME *b);
ASN1_INTEGER *X509_get_serialNumber(X509 *cert);
void X509_free(X509 *cert);
void ERR_clear_error(void);

#define DEVICES "kym/v1/devices/"
#define SHARED_ORDERS "$share/kym/kym/v1/devices/+/orders"
#define KICK_TOPIC "$CONTROL/kym/v1/kick"
#define ID_MAX 64

static mosquitto_plugin_id_t *plugin_id;

/* The CRLs of `plugin_opt_crlfile`, as last read, and when the file was last looked at. */
#define CRLS_MAX 16
static char *crl_path;
static X509_CRL *crls[CRLS_MAX];
static size_t crl_count;
static time_t crl_looked_at;
static struct stat crl_read;

static void free_crls(void)
{
	for(size_t i = 0; i < crl_count; i++){
		X509_CRL_free(crls[i]);
	}
	crl_count = 0;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_size == b->st_size
			&& a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Read the CRL file again if it changed; at most one look a second. A file that holds no CRL
 * (being rewritten, damaged) leaves the previous ones in use. */
static void refresh_crls(void)
{
	time_t now = time(NULL);
	struct stat seen;
	if(crl_path == NULL || now == crl_looked_at){
		return;
	}
	crl_looked_at = now;
	if(stat(crl_path, &seen) != 0 || (crl_count && same_file(&seen, &crl_read))){
		return;
	}
	FILE *fp = fopen(crl_path, "r");
	if(fp == NULL){
		return;
	}
	X509_CRL *fresh[CRLS_MAX];
	size_t n = 0;
	while(n < CRLS_MAX && (fresh[n] = PEM_read_X509_CRL(fp, NULL, NULL, NULL)) != NULL){
		n++;
	}
	fclose(fp);
	ERR_clear_error(); /* the end of the file is an error to PEM_read; TLS reads its queue */
	if(n == 0){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "kym_access: no CRL in %s; the last stays", crl_path);
		return;
	}
	free_crls();
	memcpy(crls, fresh, n * sizeof(X509_CRL *));
	crl_count = n;
	crl_read = seen;
}

/* True when the client's certificate is in a CRL of its issuer. */
static bool certificate_revoked(const struct mosquitto *client)
{
	refresh_crls();
	if(crl_count == 0){
		return false;
	}
	X509 *cert = mosquitto_client_certificate(client);
	if(cert == NULL){
		return false; /* offline (a delivery to be queued): checked again when it connects */
	}
	bool found = false;
	for(size_t i = 0; i < crl_count && !found; i++){
		X509_REVOKED *entry = NULL;
		found = X509_NAME_cmp(X509_CRL_get_issuer(crls[i]), X509_get_issuer_name(cert)) == 0
				&& X509_CRL_get0_by_serial(crls[i], &entry, X509_get_serialNumber(cert)) == 1;
	}
	X509_free(cert);
	return found;
}

/* The devices kicked since the broker started: an open-addressing set of ids that grows. */
static char **revoked;
static size_t revoked_slots, revoked_count;

static size_t slot_of(char **table, size_t slots, const char *id)
{
	size_t h = 5381;
	for(const char *c = id; *c; c++){
		h = h * 33 + (unsigned char)*c;
	}
	for(size_t i = h & (slots - 1);; i = (i + 1) & (slots - 1)){
		if(table[i] == NULL || !strcmp(table[i], id)){
			return i;
		}
	}
}

static bool is_revoked(const char *id)
{
	return revoked_count && revoked[slot_of(revoked, revoked_slots, id)] != NULL;
}

static bool add_revoked(const char *id)
{
	if(is_revoked(id)){
		return true;
	}
	if(2 * (revoked_count + 1) > revoked_slots){
		size_t slots = revoked_slots ? 2 * revoked_slots : 64;
		char **table = calloc(slots, sizeof(char *));
		if(table == NULL){
			return false;
		}
		for(size_t i = 0; i < revoked_slots; i++){
			if(revoked[i]){
				table[slot_of(table, slots, revoked[i])] = revoked[i];
			}
		}
		free(revoked);
		revoked = table;
		revoked_slots = slots;
	}
	char *copy = strdup(id);
	if(copy == NULL){
		return false;
	}
	revoked[slot_of(revoked, revoked_slots, id)] = copy;
	revoked_count++;
	return true;
}

/* True when `name` is `prefix` followed by one or more digits. */
static bool numbered(const char *name, const char *prefix)
{
	size_t n = strlen(prefix);
	if(strncmp(name, prefix, n) || name[n] == '\0'){
		return false;
	}
	for(const char *c = name + n; *c; c++){
		if(*c < '0' || *c > '9'){
			return false;
		}
	}
	return true;
}

/* True when `topic` is kym/v1/devices/<id>/<leaf> for some single-level, non-wildcard id. */
static bool any_device(const char *topic, const char *leaf)
{
	size_t plen = strlen(DEVICES), llen = strlen(leaf), n = strlen(topic);
	if(n <= plen + llen + 1 || strncmp(topic, DEVICES, plen) || strcmp(topic + n - llen, leaf)
			|| topic[n - llen - 1] != '/'){
		return false;
	}
	for(size_t i = plen; i < n - llen - 1; i++){
		if(topic[i] == '/' || topic[i] == '+' || topic[i] == '#'){
			return false;
		}
	}
	return true;
}

/* True when `topic` is exactly kym/v1/devices/<user>/<leaf>. */
static bool own(const char *topic, const char *user, const char *leaf)
{
	size_t plen = strlen(DEVICES), ulen = strlen(user);
	return !strncmp(topic, DEVICES, plen) && !strncmp(topic + plen, user, ulen)
			&& topic[plen + ulen] == '/' && !strcmp(topic + plen + ulen + 1, leaf);
}

static bool allowed(const struct mosquitto *client, const char *user, const char *topic,
		int access)
{
	if(access == MOSQ_ACL_UNSUBSCRIBE){
		return true;
	}
	if(numbered(user, "kym-gateway-")){
		switch(access){
			case MOSQ_ACL_SUBSCRIBE: return !strcmp(topic, SHARED_ORDERS);
			case MOSQ_ACL_READ: return any_device(topic, "orders");
			case MOSQ_ACL_WRITE: return any_device(topic, "results");
			default: return false;
		}
	}
	if(numbered(user, "kym-broker-admin-")){
		return access == MOSQ_ACL_WRITE && !strcmp(topic, KICK_TOPIC);
	}
	if(strlen(user) > ID_MAX || strpbrk(user, "/+#") || is_revoked(user)
			|| certificate_revoked(client)){
		return false;
	}
	switch(access){
		case MOSQ_ACL_WRITE: return own(topic, user, "orders");
		case MOSQ_ACL_SUBSCRIBE: return own(topic, user, "results");
		case MOSQ_ACL_READ: return own(topic, user, "results");
		default: return false;
	}
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct kym_evt_acl_check *ed = event_data;
	const char *user = mosquitto_client_username(ed->client);
	(void)event;
	(void)userdata;
	if(user == NULL || ed->topic == NULL || (ed->access == MOSQ_ACL_READ && ed->retain)){
		return MOSQ_ERR_ACL_DENIED;
	}
	bool ok = allowed(ed->client, user, ed->topic, ed->access);
	return ok ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
}

/* $CONTROL/kym/v1/kick from an admin identity: end the live connections of the device named. */
static int on_kick(int event, void *event_data, void *userdata)
{
	struct kym_evt_control *ed = event_data;
	char id[ID_MAX + 1];
	(void)event;
	(void)userdata;
	if(ed->payloadlen == 0 || ed->payloadlen > ID_MAX){
		return MOSQ_ERR_INVAL;
	}
	memcpy(id, ed->payload, ed->payloadlen);
	id[ed->payloadlen] = '\0';
	if(numbered(id, "kym-gateway-") || numbered(id, "kym-broker-admin-")){
		return MOSQ_ERR_INVAL;
	}
	if(!add_revoked(id)){
		return MOSQ_ERR_NOMEM;
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "kym_access: %s revoked; ending its sessions", id);
	mosquitto_kick_client_by_username(id, false);
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5){
			return 5;
		}
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	plugin_id = identifier;
	for(int i = 0; i < option_count; i++){
		if(!strcmp(options[i].key, "crlfile") && crl_path == NULL){
			crl_path = strdup(options[i].value);
			if(crl_path == NULL){
				return MOSQ_ERR_NOMEM;
			}
		}
	}
	int rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
	if(rc != MOSQ_ERR_SUCCESS){
		return rc;
	}
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_CONTROL, on_kick, KICK_TOPIC, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_CONTROL, on_kick, KICK_TOPIC);
	for(size_t i = 0; i < revoked_slots; i++){
		free(revoked[i]);
	}
	free(revoked);
	revoked = NULL;
	revoked_slots = revoked_count = 0;
	free_crls();
	free(crl_path);
	crl_path = NULL;
	crl_looked_at = 0;
	return MOSQ_ERR_SUCCESS;
}
