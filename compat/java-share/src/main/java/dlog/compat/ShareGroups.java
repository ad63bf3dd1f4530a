package dlog.compat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.AcknowledgeType;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaShareConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Share groups (KIP-932) with the Java KafkaShareConsumer against the broker at env BOOTSTRAP.
 * Prints one "RESULT <scenario> PASS|FAIL <detail>" line per scenario; exits 1 if any failed.
 *
 * The broker must run with group.share.record.lock.duration.ms = LOCK_MS (env, default 3000)
 * and group.share.delivery.count.limit = DELIVERY_LIMIT (env, default 3).
 *
 * A share-partition starts at the high watermark when the group first fetches it (Kafka's
 * default share.auto.offset.reset=latest), so each scenario first "primes" its group: it
 * produces a primer record until a consumer receives one, and only then produces the
 * records it checks.
 */
public final class ShareGroups {
    static final String BOOTSTRAP = env("BOOTSTRAP", "127.0.0.1:9092");
    static final long LOCK_MS = Long.parseLong(env("LOCK_MS", "3000"));
    static final int DELIVERY_LIMIT = Integer.parseInt(env("DELIVERY_LIMIT", "3"));
    static final String RUN = UUID.randomUUID().toString().substring(0, 8);
    static final String PRIMER = "primer";
    static boolean failed = false;

    static String env(String name, String fallback) {
        String value = System.getenv(name);
        return value == null || value.isEmpty() ? fallback : value;
    }

    static void result(String scenario, boolean pass, String detail) {
        System.out.println("RESULT " + scenario + " " + (pass ? "PASS" : "FAIL") + " " + detail);
        System.out.flush();
        if (!pass) failed = true;
    }

    static KafkaShareConsumer<String, String> consumer(String group) {
        Properties props = new Properties();
        props.put("bootstrap.servers", BOOTSTRAP);
        props.put("group.id", group);
        props.put("key.deserializer", StringDeserializer.class.getName());
        props.put("value.deserializer", StringDeserializer.class.getName());
        props.put("share.acknowledgement.mode", "explicit");
        return new KafkaShareConsumer<>(props);
    }

    static KafkaProducer<String, String> producer() {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        return new KafkaProducer<>(props);
    }

    static String topic(Admin admin, String name) throws Exception {
        String topic = "share-" + name + "-" + RUN;
        admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get();
        return topic;
    }

    static void send(KafkaProducer<String, String> producer, String topic, String value) throws Exception {
        producer.send(new ProducerRecord<>(topic, value)).get();
    }

    /** Produces primers until one of the consumers receives one (all of them accepted). */
    static void prime(KafkaProducer<String, String> producer, String topic,
                      List<KafkaShareConsumer<String, String>> consumers) throws Exception {
        long deadline = System.currentTimeMillis() + 60_000;
        while (System.currentTimeMillis() < deadline) {
            send(producer, topic, PRIMER);
            for (KafkaShareConsumer<String, String> consumer : consumers) {
                boolean primed = false;
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(500))) {
                    consumer.acknowledge(record, AcknowledgeType.ACCEPT);
                    primed |= PRIMER.equals(record.value());
                }
                consumer.commitSync();
                if (primed) return;
            }
        }
        throw new IllegalStateException("no primer record arrived in 60 s");
    }

    /** Two consumers share one partition: every record is delivered and accepted exactly once. */
    static void happyPath(Admin admin) throws Exception {
        String topic = topic(admin, "happy");
        String group = "share-happy-" + RUN;
        int rounds = 10, perRound = 20, total = rounds * perRound;
        try (KafkaProducer<String, String> producer = producer();
             KafkaShareConsumer<String, String> a = consumer(group);
             KafkaShareConsumer<String, String> b = consumer(group)) {
            a.subscribe(List.of(topic));
            b.subscribe(List.of(topic));
            prime(producer, topic, List.of(a, b));
            Map<String, Integer> deliveries = new HashMap<>();
            Set<String> byA = new HashSet<>(), byB = new HashSet<>();
            int produced = 0;
            long deadline = System.currentTimeMillis() + 90_000;
            while (System.currentTimeMillis() < deadline && (deliveries.size() < total || produced < total)) {
                if (produced < total) {
                    for (int i = 0; i < perRound; i++) {
                        producer.send(new ProducerRecord<>(topic, "rec-" + produced++));
                    }
                    producer.flush();
                }
                for (KafkaShareConsumer<String, String> consumer : List.of(a, b)) {
                    for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(200))) {
                        consumer.acknowledge(record, AcknowledgeType.ACCEPT);
                        if (PRIMER.equals(record.value())) continue;
                        deliveries.merge(record.value(), 1, Integer::sum);
                        (consumer == a ? byA : byB).add(record.value());
                    }
                    consumer.commitSync();
                }
            }
            Set<String> both = new HashSet<>(byA);
            both.retainAll(byB);
            long duplicates = deliveries.values().stream().filter(n -> n > 1).count();
            boolean pass = deliveries.size() == total && duplicates == 0 && both.isEmpty();
            result("java-share-two-consumers-exactly-once", pass,
                "delivered " + deliveries.size() + "/" + total + ", duplicates " + duplicates
                    + ", consumer A " + byA.size() + ", consumer B " + byB.size() + ", overlap " + both.size());
        }
    }

    /** A released record is delivered again, with its delivery count raised. */
    static void release(Admin admin) throws Exception {
        String topic = topic(admin, "release");
        String group = "share-release-" + RUN;
        try (KafkaProducer<String, String> producer = producer();
             KafkaShareConsumer<String, String> a = consumer(group);
             KafkaShareConsumer<String, String> b = consumer(group)) {
            a.subscribe(List.of(topic));
            b.subscribe(List.of(topic));
            prime(producer, topic, List.of(a));
            for (int i = 0; i < 5; i++) send(producer, topic, "rel-" + i);
            Set<String> released = new HashSet<>();
            Map<String, Short> redelivered = new HashMap<>();
            long deadline = System.currentTimeMillis() + 60_000;
            while (System.currentTimeMillis() < deadline && redelivered.size() < 5) {
                for (KafkaShareConsumer<String, String> consumer : List.of(a, b)) {
                    for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(300))) {
                        if (PRIMER.equals(record.value()) || released.contains(record.value())) {
                            consumer.acknowledge(record, AcknowledgeType.ACCEPT);
                            if (!PRIMER.equals(record.value()))
                                redelivered.put(record.value(), record.deliveryCount().orElse((short) -1));
                        } else {
                            consumer.acknowledge(record, AcknowledgeType.RELEASE);
                            released.add(record.value());
                        }
                    }
                    consumer.commitSync();
                }
            }
            boolean pass = redelivered.size() == 5 && redelivered.values().stream().allMatch(c -> c == 2);
            result("java-share-release-redelivers", pass, "released " + released.size() + ", redelivered " + redelivered);
        }
    }

    /** A consumer that never acknowledges: its records come to another after the lock timeout. */
    static void lockTimeout(Admin admin) throws Exception {
        String topic = topic(admin, "lock");
        String group = "share-lock-" + RUN;
        try (KafkaProducer<String, String> producer = producer();
             KafkaShareConsumer<String, String> silent = consumer(group);
             KafkaShareConsumer<String, String> other = consumer(group)) {
            silent.subscribe(List.of(topic));
            prime(producer, topic, List.of(silent));
            // One batch, so that one fetch hands all of them out.
            for (int i = 0; i < 5; i++) producer.send(new ProducerRecord<>(topic, "lock-" + i));
            producer.flush();
            // The silent consumer takes records and then neither acknowledges them nor polls
            // again (in explicit mode a poll would insist on the acknowledgements).
            Set<String> held = new HashSet<>();
            long deadline = System.currentTimeMillis() + 30_000;
            while (System.currentTimeMillis() < deadline && held.isEmpty()) {
                for (ConsumerRecord<String, String> record : silent.poll(Duration.ofMillis(500))) {
                    if (PRIMER.equals(record.value())) {
                        silent.acknowledge(record, AcknowledgeType.ACCEPT);
                    } else {
                        held.add(record.value());
                    }
                }
                if (held.isEmpty()) silent.commitSync();
            }
            long acquiredAt = System.currentTimeMillis();
            other.subscribe(List.of(topic));
            Map<String, Short> redelivered = new HashMap<>();
            long firstSeenMs = -1;
            deadline = System.currentTimeMillis() + 30_000 + LOCK_MS;
            while (System.currentTimeMillis() < deadline && redelivered.size() < held.size()) {
                for (ConsumerRecord<String, String> record : other.poll(Duration.ofMillis(300))) {
                    other.acknowledge(record, AcknowledgeType.ACCEPT);
                    if (held.contains(record.value())) {
                        if (firstSeenMs < 0) firstSeenMs = System.currentTimeMillis() - acquiredAt;
                        redelivered.put(record.value(), record.deliveryCount().orElse((short) -1));
                    }
                }
                other.commitSync();
            }
            boolean pass = !held.isEmpty() && redelivered.size() == held.size()
                && redelivered.values().stream().allMatch(c -> c == 2);
            result("java-share-lock-timeout-redelivers", pass, "held " + held.size() + ", redelivered "
                + redelivered + " after " + firstSeenMs + " ms (lock " + LOCK_MS + " ms)");
        }
    }

    /** REJECT archives at once; RELEASE at every delivery archives at the delivery-count limit. */
    static void rejectAndLimit(Admin admin) throws Exception {
        String topic = topic(admin, "reject");
        String group = "share-reject-" + RUN;
        try (KafkaProducer<String, String> producer = producer();
             KafkaShareConsumer<String, String> consumer = consumer(group)) {
            consumer.subscribe(List.of(topic));
            prime(producer, topic, List.of(consumer));
            send(producer, topic, "rejected");
            send(producer, topic, "released");
            send(producer, topic, "after");
            Map<String, Integer> seen = new HashMap<>();
            List<Short> releasedCounts = new ArrayList<>();
            long deadline = System.currentTimeMillis() + 20_000;
            long quietUntil = Long.MAX_VALUE;
            while (System.currentTimeMillis() < Math.min(deadline, quietUntil)) {
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(300))) {
                    seen.merge(record.value(), 1, Integer::sum);
                    switch (record.value()) {
                        case "rejected" -> consumer.acknowledge(record, AcknowledgeType.REJECT);
                        case "released" -> {
                            releasedCounts.add(record.deliveryCount().orElse((short) -1));
                            consumer.acknowledge(record, AcknowledgeType.RELEASE);
                        }
                        default -> consumer.acknowledge(record, AcknowledgeType.ACCEPT);
                    }
                }
                consumer.commitSync();
                // Once the limit is reached, watch a little longer that nothing comes back.
                if (releasedCounts.size() >= DELIVERY_LIMIT && quietUntil == Long.MAX_VALUE)
                    quietUntil = System.currentTimeMillis() + 2_000;
            }
            boolean pass = seen.getOrDefault("rejected", 0) == 1
                && seen.getOrDefault("after", 0) == 1
                && releasedCounts.size() == DELIVERY_LIMIT;
            result("java-share-reject-and-delivery-limit", pass, "deliveries " + seen
                + ", delivery counts of the released record " + releasedCounts + " (limit " + DELIVERY_LIMIT + ")");
        }
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
        try (Admin admin = Admin.create(props)) {
            for (String scenario : (args.length > 0 ? args : new String[]{"happy", "release", "lock", "reject"})) {
                try {
                    switch (scenario) {
                        case "happy" -> happyPath(admin);
                        case "release" -> release(admin);
                        case "lock" -> lockTimeout(admin);
                        case "reject" -> rejectAndLimit(admin);
                        default -> throw new IllegalArgumentException(scenario);
                    }
                } catch (Exception e) {
                    result("java-share-" + scenario, false, "exception: " + e);
                    e.printStackTrace();
                }
            }
        }
        System.exit(failed ? 1 : 0);
    }
}
