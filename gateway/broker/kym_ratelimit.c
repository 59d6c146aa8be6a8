/*
 * kym_ratelimit: a Mosquitto 2.0 plugin that limits, per device, the messages published to its
 * orders topic (kym/v1/devices/<id>/orders) with a token bucket, before the broker queues them for
 * the gateway. Part of KYM (https://github.com/kym; CONTRACT.md section 10).
 *
 * Why in the broker: Mosquitto keeps one FIFO queue per subscriber, so a device flooding its
 * orders topic fills the gateway's queue and every other device's orders wait behind the flood,
 * however fast the gateway refuses it. Dropped here, a flood never reaches that queue.
 *
 * The gateway keeps its own, tighter limit (and answers `rate_limited`); this one is looser
 * (`kym` sets it to twice the gateway's rate and burst), so it only drops what the gateway would
 * refuse anyway and the gateway still sees enough of a flood to answer it once a second. A
 * dropped message is acknowledged (PUBACK) and discarded, as Mosquitto does with a publish its
 * access rules deny.
 *
 * A device that keeps on is disconnected: once the messages dropped from it, less `rate` for
 * every second since, exceed `disconnect_after`, the broker closes its connection, and what it
 * had written into the socket beyond is never read. A device within twice this limit is never
 * disconnected; a flood costs the broker `burst + disconnect_after` messages, not all of them.
 *
 * An order published with QoS 2 disconnects the device too: orders are QoS 1, and Mosquitto keeps
 * each QoS 2 message until the publisher's PUBREL, up to max_inflight_messages of them (200) of up
 * to 256 KiB each per device, kept with its persistent session for a day: 39 MB held after a
 * device sent 600 orders of 200 kB within its rate and never released them, and left (measured).
 * The embedded broker closes such a connection as well.
 *
 * Options (plugin_opt_*): rate (tokens a second, default 20), burst (default 100),
 * disconnect_after (messages beyond the limit, default 500; 0: never), slots (size of
 * the table of buckets, a power of two, default 65536). The table is fixed: when a device's slot
 * and its neighbours are taken, the bucket used longest ago is reused (that device starts again
 * with a full burst, and the gateway's own limit still holds).
 *
 * Built by `gateway/broker/plugin.py` with the system's C compiler; it declares the few parts of
 * Mosquitto's plugin interface (version 5, Mosquitto 2.0) that it uses instead of including
 * mosquitto_broker.h, so no development package is needed. The broker resolves the two
 * functions below at load time.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOSQ_EVT_MESSAGE 7
#define MOSQ_ERR_SUCCESS 0
#define MOSQ_ERR_NOMEM 1
#define MOSQ_ERR_ACL_DENIED 12
#define MOSQ_ERR_ADMINISTRATIVE_ACTION 30
#define MOSQ_LOG_NOTICE 0x02

typedef struct mosquitto_plugin_id_t mosquitto_plugin_id_t;
struct mosquitto;
struct mosquitto_opt {
	char *key;
	char *value;
};
/* struct mosquitto_evt_message of mosquitto_broker.h (2.0) */
struct kym_evt_message {
	void *future;
	struct mosquitto *client;
	char *topic;
	void *payload;
	void *properties;
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
void mosquitto_log_printf(int level, const char *fmt, ...);

#define PREFIX "kym/v1/devices/"
#define SUFFIX "/orders"
#define ID_MAX 64
#define PROBES 16

struct bucket {
	char id[ID_MAX + 1];
	double tokens;
	double over; /* dropped, less `rate` a second since */
	double updated;
};

static mosquitto_plugin_id_t *plugin_id;
static struct bucket *table;
static size_t slots = 65536;
static double rate = 20.0, burst = 100.0, disconnect_after = 500.0;
static unsigned long dropped, disconnected;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t fnv1a(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for(size_t i = 0; i < n; i++){
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* The device id in an orders topic, or NULL (any other topic is not limited here). */
static const char *device_of(const char *topic, size_t *len)
{
	size_t plen = sizeof(PREFIX) - 1, slen = sizeof(SUFFIX) - 1, n = strlen(topic);
	if(n <= plen + slen || strncmp(topic, PREFIX, plen) || strcmp(topic + n - slen, SUFFIX)){
		return NULL;
	}
	*len = n - plen - slen;
	if(*len > ID_MAX || memchr(topic + plen, '/', *len)){
		return NULL;
	}
	return topic + plen;
}

/* The device's bucket: its own, a free slot, or the one near it used longest ago. */
static struct bucket *bucket_of(const char *id, size_t len, double now)
{
	size_t mask = slots - 1, start = (size_t)fnv1a(id, len) & mask;
	struct bucket *oldest = NULL;
	for(size_t i = 0; i < PROBES; i++){
		struct bucket *b = &table[(start + i) & mask];
		if(b->id[0] == '\0' || (strncmp(b->id, id, len) == 0 && b->id[len] == '\0')){
			if(b->id[0] == '\0'){
				memcpy(b->id, id, len);
				b->id[len] = '\0';
				b->tokens = burst;
				b->over = 0.0;
				b->updated = now;
			}
			return b;
		}
		if(oldest == NULL || b->updated < oldest->updated){
			oldest = b;
		}
	}
	memcpy(oldest->id, id, len);
	oldest->id[len] = '\0';
	oldest->tokens = burst;
	oldest->over = 0.0;
	oldest->updated = now;
	return oldest;
}

static int on_message(int event, void *event_data, void *userdata)
{
	struct kym_evt_message *ed = event_data;
	size_t len;
	const char *id;
	(void)event;
	(void)userdata;

	id = ed->topic ? device_of(ed->topic, &len) : NULL;
	if(id == NULL){
		return MOSQ_ERR_SUCCESS;
	}
	if(ed->qos > 1){
		mosquitto_log_printf(MOSQ_LOG_NOTICE,
				"kym_ratelimit: disconnecting %.*s: an order with QoS 2 (orders are QoS 1)",
				(int)len, id);
		return MOSQ_ERR_ADMINISTRATIVE_ACTION;
	}
	double now = now_s();
	struct bucket *b = bucket_of(id, len, now);
	if(now > b->updated){
		double refill = (now - b->updated) * rate;
		b->tokens = b->tokens + refill > burst ? burst : b->tokens + refill;
		b->over = b->over - refill < 0.0 ? 0.0 : b->over - refill;
		b->updated = now;
	}
	if(b->tokens >= 1.0){
		b->tokens -= 1.0;
		return MOSQ_ERR_SUCCESS;
	}
	if(dropped++ % 10000 == 0){
		mosquitto_log_printf(MOSQ_LOG_NOTICE,
				"kym_ratelimit: dropping orders beyond %.1f a second (bursts of %.0f) from %s; "
				"%lu dropped in all", rate, burst, b->id, dropped);
	}
	b->over += 1.0;
	if(disconnect_after > 0.0 && b->over > disconnect_after){
		b->over = 0.0;
		mosquitto_log_printf(MOSQ_LOG_NOTICE,
				"kym_ratelimit: disconnecting %s: more than %.0f orders beyond its limit "
				"(%lu disconnections in all)", b->id, disconnect_after, ++disconnected);
		return MOSQ_ERR_ADMINISTRATIVE_ACTION; /* handle__publish returns it: the broker
		                                         * closes the connection, unread bytes and all */
	}
	return MOSQ_ERR_ACL_DENIED;
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
	for(int i = 0; i < option_count; i++){
		if(!strcmp(options[i].key, "rate") && atof(options[i].value) > 0){
			rate = atof(options[i].value);
		}else if(!strcmp(options[i].key, "burst") && atof(options[i].value) >= 1){
			burst = atof(options[i].value);
		}else if(!strcmp(options[i].key, "disconnect_after") && atof(options[i].value) >= 0){
			disconnect_after = atof(options[i].value);
		}else if(!strcmp(options[i].key, "slots") && atol(options[i].value) >= PROBES){
			slots = PROBES;
			while(slots < (size_t)atol(options[i].value)){
				slots <<= 1;
			}
		}
	}
	table = calloc(slots, sizeof(struct bucket));
	if(table == NULL){
		return MOSQ_ERR_NOMEM;
	}
	plugin_id = identifier;
	mosquitto_log_printf(MOSQ_LOG_NOTICE,
			"kym_ratelimit: at most %.1f orders a second per device, bursts of %.0f; "
			"disconnected after %.0f beyond (0: never)", rate, burst, disconnect_after);
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL);
	free(table);
	table = NULL;
	return MOSQ_ERR_SUCCESS;
}
