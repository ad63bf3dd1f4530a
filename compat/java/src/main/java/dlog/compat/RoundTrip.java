package dlog.compat;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.DescribeTopicsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Java-client round trip against the broker at env BOOTSTRAP (host:port).
 *
 * <pre>
 *   RoundTrip                     all scenarios (see below)
 *   RoundTrip delete-topic NAME   delete NAME if present and wait until it is gone (prep for other tools)
 *   RoundTrip check-verifiable-producer SCENARIO FILE N   judge VerifiableProducer's JSON output
 *   RoundTrip check-verifiable-consumer SCENARIO FILE N   judge VerifiableConsumer's JSON output
 *   RoundTrip check-copy SCENARIO IN OUT GROUP N   judge a TransactionalMessageCopier run: partition 0 of OUT,
 *                                                  read_committed, holds exactly the values 0..N-1 once each, and
 *                                                  GROUP's committed offset of IN-0 is IN-0's end offset (N)
 * </pre>
 *
 * Scenarios, one line each: {@code RESULT java-<scenario> PASS|FAIL <detail>}; exit status 1 on any FAIL.
 * admin-create-topic, produce-CODEC and roundtrip-CODEC for each codec, roundtrip-order,
 * transactions (commit/abort mix read by read_committed and read_uncommitted consumers, fencing by a
 * second producer with the same transactional.id), consume-transform-produce (sendOffsetsToTransaction with
 * the group metadata of a subscribed read_committed consumer; aborted rounds commit neither output nor offsets),
 * transactions-v2 (KIP-890 part 2: the broker finalizes transaction.version=2, the client's transaction manager runs
 * in v2 mode, every EndTxn bumps the producer epoch — seen with DescribeTransactions and in the partitions' producer
 * state with DescribeProducers — and read_committed sees exactly the committed records across commit, abort and
 * fencing), transaction-timeout (an open transaction past its timeout is aborted by the coordinator, the LSO advances),
 * admin-list-topics, admin-describe-cluster, admin-describe-topics, admin-describe-configs.
 *
 * Env: BOOTSTRAP (required), TOPIC (default: a fresh name per run), N (records per codec, default 200),
 * RT_TIMEOUT_S (hard limit for the whole program, default 240).
 * Reads use assign + seekToBeginning (no group) except consume-transform-produce; producers keep the client default
 * (enable.idempotence=true).
 */
public final class RoundTrip {
    static final String[] CODECS = {"none", "gzip", "snappy", "lz4", "zstd"};
    static final int PARTITIONS = 3;
    static final int LARGE_VALUE_SIZE = 900 * 1024;
    static final String RUN_HEADER = "rt-run";
    static final String ID_HEADER = "rt-id";

    static int failures = 0;

    static void result(String scenario, boolean pass, String detail) {
        if (!pass) failures++;
        String d = detail == null ? "" : detail.replace('\n', ' ').replace('\r', ' ');
        if (d.length() > 600) d = d.substring(0, 600) + "...";
        System.out.println("RESULT java-" + scenario + " " + (pass ? "PASS" : "FAIL") + " " + d);
        System.out.flush();
    }

    /** One record as sent, with the metadata the broker acknowledged. */
    static final class Sent {
        final String codec;
        final int idx;
        final int partition;
        final byte[] key;
        final byte[] value;
        final List<Header> headers;
        final long timestamp;
        long offset = -1;

        Sent(String codec, int idx, int partition, byte[] key, byte[] value, List<Header> headers, long timestamp) {
            this.codec = codec;
            this.idx = idx;
            this.partition = partition;
            this.key = key;
            this.value = value;
            this.headers = headers;
            this.timestamp = timestamp;
        }

        String id() {
            return codec + ":" + idx;
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = System.getenv("BOOTSTRAP");
        boolean needsBroker = args.length == 0 || args[0].equals("delete-topic");
        if (needsBroker && (bootstrap == null || bootstrap.isEmpty())) {
            System.err.println("RoundTrip: env BOOTSTRAP (host:port) is required");
            System.exit(2);
        }
        long hardLimitS = Long.parseLong(envOr("RT_TIMEOUT_S", "240"));
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(hardLimitS * 1000);
            } catch (InterruptedException e) {
                return;
            }
            result("roundtrip-watchdog", false, "program exceeded RT_TIMEOUT_S=" + hardLimitS + "s");
            Runtime.getRuntime().halt(1);
        }, "watchdog");
        watchdog.setDaemon(true);
        watchdog.start();

        int rc;
        if (args.length >= 1 && args[0].equals("delete-topic")) {
            if (args.length != 2) {
                System.err.println("usage: RoundTrip delete-topic NAME");
                System.exit(2);
            }
            rc = deleteTopic(bootstrap, args[1]) ? 0 : 1;
        } else if (args.length == 4 && args[0].equals("check-verifiable-producer")) {
            checkVerifiableProducer(args[1], args[2], Integer.parseInt(args[3]));
            rc = failures == 0 ? 0 : 1;
        } else if (args.length == 4 && args[0].equals("check-verifiable-consumer")) {
            checkVerifiableConsumer(args[1], args[2], Integer.parseInt(args[3]));
            rc = failures == 0 ? 0 : 1;
        } else if (args.length == 6 && args[0].equals("check-copy")) {
            if (bootstrap == null || bootstrap.isEmpty()) {
                System.err.println("RoundTrip check-copy: env BOOTSTRAP (host:port) is required");
                System.exit(2);
            }
            checkCopy(bootstrap, args[1], args[2], args[3], args[4], Integer.parseInt(args[5]));
            rc = failures == 0 ? 0 : 1;
        } else if (args.length == 0) {
            runAll(bootstrap);
            rc = failures == 0 ? 0 : 1;
        } else {
            System.err.println("usage: RoundTrip [delete-topic NAME | check-verifiable-producer|check-verifiable-consumer SCENARIO FILE N"
                    + " | check-copy SCENARIO IN OUT GROUP N]");
            rc = 2;
        }
        System.out.flush();
        Runtime.getRuntime().halt(rc); // do not wait for lingering client threads
    }

    static String envOr(String name, String def) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? def : v;
    }

    static Properties adminProps(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "dlog-compat-java-admin");
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        return p;
    }

    static String describe(Throwable t) {
        Throwable c = t;
        while ((c instanceof ExecutionException || c instanceof java.util.concurrent.CompletionException)
                && c.getCause() != null) {
            c = c.getCause();
        }
        return c.getClass().getSimpleName() + ": " + c.getMessage();
    }

    // ---------------------------------------------------------------- delete-topic

    static boolean deleteTopic(String bootstrap, String topic) {
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            if (!admin.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic)) {
                System.out.println("topic " + topic + " absent");
                return true;
            }
            try {
                admin.deleteTopics(Set.of(topic)).all().get(30, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof UnknownTopicOrPartitionException)) throw e;
            }
            long deadline = System.currentTimeMillis() + 30_000;
            while (System.currentTimeMillis() < deadline) {
                if (!admin.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic)) {
                    System.out.println("topic " + topic + " deleted");
                    return true;
                }
                Thread.sleep(200);
            }
            System.out.println("topic " + topic + " still listed 30s after deleteTopics");
            return false;
        } catch (Exception e) {
            System.out.println("delete-topic " + topic + " failed: " + describe(e));
            return false;
        }
    }

    // ---------------------------------------------------------------- all scenarios

    static void runAll(String bootstrap) {
        String runId = Long.toString(System.currentTimeMillis(), 36) + "-" + Integer.toString(new Random().nextInt(1 << 20), 36);
        String topic = envOr("TOPIC", "compat-java-rt-" + runId);
        int n = Integer.parseInt(envOr("N", "200"));

        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            boolean topicOk = createTopic(admin, topic);
            if (!topicOk) {
                for (String codec : CODECS) result("produce-" + codec, false, "skipped: topic not available");
                for (String codec : CODECS) result("roundtrip-" + codec, false, "skipped: topic not available");
            } else {
                Map<String, List<Sent>> sentByCodec = new LinkedHashMap<>();
                for (String codec : CODECS) {
                    sentByCodec.put(codec, produce(bootstrap, topic, runId, codec, n));
                }
                consumeAndCheck(bootstrap, topic, runId, sentByCodec);
            }
            transactions(bootstrap, admin, "compat-java-txn-" + runId);
            transactionsV2(bootstrap, admin, "compat-java-txnv2-" + runId);
            consumeTransformProduce(bootstrap, admin, "compat-java-ctp-" + runId);
            transactionTimeout(bootstrap, admin, "compat-java-timeout-" + runId);
            listTopics(admin, topic);
            describeCluster(admin);
            describeTopics(admin, topic);
            describeTopicsPaginated(admin, topic, "compat-java-describe-" + runId);
            describeConfigs(admin, topic);
        } catch (Exception e) {
            result("roundtrip-admin", false, "unexpected: " + describe(e));
        }
    }

    static KafkaProducer<byte[], byte[]> txnProducer(String bootstrap, String transactionalId) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "dlog-compat-java-txn");
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
        KafkaProducer<byte[], byte[]> producer =
                new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
        producer.initTransactions();
        return producer;
    }

    static void sendAll(KafkaProducer<byte[], byte[]> producer, String topic, String prefix, int n) throws Exception {
        List<Future<RecordMetadata>> futures = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            futures.add(producer.send(new ProducerRecord<>(topic, 0, null, utf8(prefix + "-" + i))));
        }
        for (Future<RecordMetadata> f : futures) f.get(30, TimeUnit.SECONDS);
    }

    /** Values of partition 0 from the start to the end offset the consumer sees at its isolation level. */
    static List<String> readAll(String bootstrap, String topic, String isolation) {
        return readAll(bootstrap, topic, 0, isolation);
    }

    /** Values of one partition from the start to the end offset the consumer sees at its isolation level. */
    static List<String> readAll(String bootstrap, String topic, int partition, String isolation) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "dlog-compat-java-txn-consumer");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "200");
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        List<String> values = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> consumer =
                     new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            TopicPartition tp = new TopicPartition(topic, partition);
            consumer.assign(List.of(tp));
            consumer.seekToBeginning(List.of(tp));
            long end = consumer.endOffsets(List.of(tp)).get(tp);
            long deadline = System.currentTimeMillis() + 30_000;
            while (consumer.position(tp) < end && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    values.add(new String(r.value(), StandardCharsets.UTF_8));
                }
            }
        }
        return values;
    }

    static void transactions(String bootstrap, Admin admin, String topic) {
        try {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(30, TimeUnit.SECONDS);
            String id = topic + "-id";
            KafkaProducer<byte[], byte[]> first = txnProducer(bootstrap, id);
            first.beginTransaction();
            sendAll(first, topic, "c1", 10);
            first.commitTransaction();
            first.beginTransaction();
            sendAll(first, topic, "a", 10);
            first.abortTransaction();
            first.beginTransaction();
            sendAll(first, topic, "c2", 5);
            first.commitTransaction();
            first.beginTransaction();
            sendAll(first, topic, "zombie", 3);
            KafkaProducer<byte[], byte[]> second = txnProducer(bootstrap, id);
            String fenced = commitFenced(first);
            second.beginTransaction();
            sendAll(second, topic, "c3", 2);
            second.commitTransaction();
            second.close(Duration.ofSeconds(5));
            List<String> expected = new ArrayList<>();
            for (int i = 0; i < 10; i++) expected.add("c1-" + i);
            for (int i = 0; i < 5; i++) expected.add("c2-" + i);
            for (int i = 0; i < 2; i++) expected.add("c3-" + i);
            List<String> committed = readAll(bootstrap, topic, "read_committed");
            List<String> uncommitted = readAll(bootstrap, topic, "read_uncommitted");
            boolean ok = fenced == null && committed.equals(expected) && uncommitted.size() == 30;
            result("transactions", ok, ok
                    ? "read_committed " + committed.size() + " of " + uncommitted.size() + " records; zombie fenced"
                    : "fencing: " + fenced + "; read_committed " + committed + "; read_uncommitted " + uncommitted.size());
        } catch (Exception e) {
            result("transactions", false, describe(e));
        }
    }

    /**
     * Commits with a producer another one with the same transactional.id has fenced, then closes it: null when
     * the commit is refused as fenced, else what happened instead.
     */
    static String commitFenced(KafkaProducer<byte[], byte[]> fencedProducer) {
        String problem;
        try {
            fencedProducer.commitTransaction();
            problem = "the first producer committed after being fenced";
        } catch (Exception e) {
            String name = e.getClass().getSimpleName();
            problem = name.contains("Fenced") || name.contains("InvalidProducerEpoch") ? null : "unexpected " + describe(e);
        }
        fencedProducer.close(Duration.ZERO);
        return problem;
    }

    /** Whether the producer's transaction manager runs transactions v2 (its own flag, read by reflection). */
    static boolean clientUsesTransactionsV2(KafkaProducer<byte[], byte[]> producer) throws Exception {
        java.lang.reflect.Field field = KafkaProducer.class.getDeclaredField("transactionManager");
        field.setAccessible(true);
        Object manager = field.get(producer);
        return (Boolean) manager.getClass().getMethod("isTransactionV2Enabled").invoke(manager);
    }

    /** The coordinator's producer epoch of a transactional id and its state (DescribeTransactions). */
    static org.apache.kafka.clients.admin.TransactionDescription describeTxn(Admin admin, String id) throws Exception {
        return admin.describeTransactions(List.of(id)).description(id).get(30, TimeUnit.SECONDS);
    }

    /**
     * Transactions v2 (KIP-890 part 2): transaction.version finalized at 2 and used by the client (no
     * AddPartitionsToTxn; EndTxn v5 bumps the epoch). Commit, abort, commit over two partitions: the coordinator's
     * epoch grows by one per EndTxn and the last marker in each partition carries it (DescribeProducers). Then a
     * second producer with the same id fences the first, whose open transaction is aborted; read_committed sees
     * exactly the committed records in both partitions, read_uncommitted every record.
     */
    static void transactionsV2(String bootstrap, Admin admin, String topic) {
        try {
            admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get(30, TimeUnit.SECONDS);
            org.apache.kafka.clients.admin.FinalizedVersionRange level = admin.describeFeatures().featureMetadata()
                    .get(30, TimeUnit.SECONDS).finalizedFeatures().get("transaction.version");
            String id = topic + "-id";
            KafkaProducer<byte[], byte[]> first = txnProducer(bootstrap, id);
            boolean v2 = clientUsesTransactionsV2(first);
            int epoch0 = describeTxn(admin, id).producerEpoch();
            List<Integer> epochs = new ArrayList<>();
            List<String> expected0 = new ArrayList<>(), expected1 = new ArrayList<>();
            String[][] rounds = {{"c1", "commit"}, {"a1", "abort"}, {"c2", "commit"}};
            for (String[] round : rounds) {
                first.beginTransaction();
                sendAll(first, topic, round[0], 5);
                first.send(new ProducerRecord<>(topic, 1, null, utf8(round[0] + "-p1"))).get(30, TimeUnit.SECONDS);
                if (round[1].equals("commit")) {
                    first.commitTransaction();
                    for (int i = 0; i < 5; i++) expected0.add(round[0] + "-" + i);
                    expected1.add(round[0] + "-p1");
                } else {
                    first.abortTransaction();
                }
                epochs.add((int) describeTxn(admin, id).producerEpoch());
            }
            List<Integer> expectedEpochs = List.of(epoch0 + 1, epoch0 + 2, epoch0 + 3);
            long producerId = describeTxn(admin, id).producerId();
            TopicPartition tp0 = new TopicPartition(topic, 0);
            int markerEpoch = admin.describeProducers(List.of(tp0)).partitionResult(tp0).get(30, TimeUnit.SECONDS)
                    .activeProducers().stream().filter(p -> p.producerId() == producerId)
                    .mapToInt(p -> p.producerEpoch()).findFirst().orElse(-1);
            // Fencing: a second producer takes the id over while the first has a transaction open.
            first.beginTransaction();
            sendAll(first, topic, "zombie", 3);
            KafkaProducer<byte[], byte[]> second = txnProducer(bootstrap, id);
            String fenced = commitFenced(first);
            second.beginTransaction();
            sendAll(second, topic, "c3", 2);
            second.commitTransaction();
            boolean secondV2 = clientUsesTransactionsV2(second);
            second.close(Duration.ofSeconds(5));
            for (int i = 0; i < 2; i++) expected0.add("c3-" + i);
            List<String> committed0 = readAll(bootstrap, topic, 0, "read_committed");
            List<String> committed1 = readAll(bootstrap, topic, 1, "read_committed");
            int uncommitted = readAll(bootstrap, topic, 0, "read_uncommitted").size()
                    + readAll(bootstrap, topic, 1, "read_uncommitted").size();
            boolean levelOk = level != null && level.maxVersionLevel() >= 2;
            boolean ok = levelOk && v2 && secondV2 && epochs.equals(expectedEpochs) && markerEpoch == epoch0 + 3
                    && fenced == null && committed0.equals(expected0) && committed1.equals(expected1)
                    && uncommitted == 15 + 3 + 3 + 2;
            result("transactions-v2", ok, (ok ? "" : "MISMATCH: ")
                    + "transaction.version finalized " + (level == null ? "none" : level.maxVersionLevel())
                    + ", client v2 " + v2 + "/" + secondV2
                    + ", epochs after commit/abort/commit " + epochs + " from " + epoch0
                    + ", DescribeProducers epoch " + markerEpoch
                    + ", fencing " + (fenced == null ? "ok" : fenced)
                    + ", read_committed p0 " + committed0.size() + "/" + expected0.size()
                    + " p1 " + committed1 + ", read_uncommitted " + uncommitted);
        } catch (Exception e) {
            result("transactions-v2", false, describe(e));
        }
    }

    /**
     * The group's committed offsets for {@code topic}: partition → offset (absent when none). With requireStable
     * (as a read_committed consumer asks): a partition with transactional offsets still pending gets
     * UNSTABLE_OFFSET_COMMIT and is left out of the answer.
     */
    static Map<Integer, Long> groupOffsets(Admin admin, String group, String topic) throws Exception {
        Map<Integer, Long> out = new java.util.TreeMap<>();
        admin.listConsumerGroupOffsets(group,
                        new org.apache.kafka.clients.admin.ListConsumerGroupOffsetsOptions().requireStable(true))
                .partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS)
                .forEach((tp, om) -> {
                    if (om != null && tp.topic().equals(topic)) out.put(tp.partition(), om.offset());
                });
        return out;
    }

    /**
     * Polls {@link #groupOffsets} (bounded by 15 s) until it equals {@code expected}; returns the last answer.
     * Kafka completes a transaction's offsets after answering EndTxn (it writes the markers then), so right after
     * commitTransaction() they may still be pending.
     */
    static Map<Integer, Long> awaitGroupOffsets(Admin admin, String group, String topic, Map<Integer, Long> expected)
            throws Exception {
        long deadline = System.currentTimeMillis() + 15_000;
        Map<Integer, Long> now = groupOffsets(admin, group, topic);
        while (!now.equals(expected) && System.currentTimeMillis() < deadline) {
            Thread.sleep(100);
            now = groupOffsets(admin, group, topic);
        }
        return now;
    }

    /**
     * Consume-transform-produce with sendOffsetsToTransaction: a group member (subscribe, read_committed,
     * 25 records per poll) writes each input record transformed to the same partition of the output and
     * commits its input positions in the same transaction, with the consumer's group metadata. Rounds 0 and 3
     * abort; the member is then replaced and the group resumes from its committed offsets. Output read_committed
     * must be exactly the transformed input; the group's offsets must move only with committed rounds and end at
     * the input's end offsets; the aborted rounds' records stay in the log, hidden.
     */
    static void consumeTransformProduce(String bootstrap, Admin admin, String prefix) {
        final int partitions = 2, perPartition = 60;
        String in = prefix + "-in", out = prefix + "-out", group = prefix + "-group";
        try {
            admin.createTopics(List.of(new NewTopic(in, partitions, (short) 1), new NewTopic(out, partitions, (short) 1)))
                    .all().get(30, TimeUnit.SECONDS);
            Properties pp = new Properties();
            pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            pp.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
            pp.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
            try (KafkaProducer<byte[], byte[]> plain = new KafkaProducer<>(pp, new ByteArraySerializer(), new ByteArraySerializer())) {
                List<Future<RecordMetadata>> futures = new ArrayList<>();
                for (int p = 0; p < partitions; p++) {
                    for (int i = 0; i < perPartition; i++) {
                        futures.add(plain.send(new ProducerRecord<>(in, p, null, utf8("in-p" + p + "-" + i))));
                    }
                }
                for (Future<RecordMetadata> f : futures) f.get(30, TimeUnit.SECONDS);
            }
            Properties cp = new Properties();
            cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            cp.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
            cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
            cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            cp.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "25");
            cp.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "200");
            cp.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
            Map<Integer, Long> end = new java.util.TreeMap<>();
            for (int p = 0; p < partitions; p++) end.put(p, (long) perPartition);
            Map<Integer, Long> committed = new java.util.TreeMap<>();
            Set<Integer> abortRounds = Set.of(0, 3);
            List<String> problems = new ArrayList<>();
            int aborted = 0, rounds = 0;
            long deadline = System.currentTimeMillis() + 120_000;
            KafkaConsumer<byte[], byte[]> consumer = null;
            try (KafkaProducer<byte[], byte[]> producer = txnProducer(bootstrap, prefix + "-id")) {
                while (!committed.equals(end) && problems.isEmpty()) {
                    if (System.currentTimeMillis() > deadline) {
                        problems.add("not done after 120 s: committed " + committed);
                        break;
                    }
                    if (consumer == null) {
                        consumer = new KafkaConsumer<>(cp, new ByteArrayDeserializer(), new ByteArrayDeserializer());
                        consumer.subscribe(List.of(in));
                    }
                    org.apache.kafka.clients.consumer.ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(500));
                    if (records.isEmpty()) continue;
                    Map<TopicPartition, org.apache.kafka.clients.consumer.OffsetAndMetadata> offsets = new HashMap<>();
                    producer.beginTransaction();
                    for (ConsumerRecord<byte[], byte[]> r : records) {
                        producer.send(new ProducerRecord<>(out, r.partition(), null,
                                utf8("out-" + new String(r.value(), StandardCharsets.UTF_8))));
                        offsets.put(new TopicPartition(in, r.partition()),
                                new org.apache.kafka.clients.consumer.OffsetAndMetadata(r.offset() + 1));
                    }
                    // Flushed so that an aborted round's records do reach the log (abortTransaction would
                    // drop batches still unsent) and must be hidden by the abort marker.
                    producer.flush();
                    producer.sendOffsetsToTransaction(offsets, consumer.groupMetadata());
                    if (abortRounds.contains(rounds)) {
                        producer.abortTransaction();
                        aborted += records.count();
                        Map<Integer, Long> now = awaitGroupOffsets(admin, group, in, committed);
                        if (!now.equals(committed)) problems.add("round " + rounds + " aborted, yet group offsets " + now + " != " + committed);
                        consumer.close(Duration.ofSeconds(10)); // rewind: a new member resumes from the committed offsets
                        consumer = null;
                    } else {
                        producer.commitTransaction();
                        offsets.forEach((tp, om) -> committed.put(tp.partition(), om.offset()));
                        Map<Integer, Long> now = awaitGroupOffsets(admin, group, in, committed);
                        if (!now.equals(committed)) problems.add("round " + rounds + " committed, group offsets " + now + " != " + committed);
                    }
                    rounds++;
                }
            } finally {
                if (consumer != null) consumer.close(Duration.ofSeconds(10));
            }
            int uncommitted = 0;
            for (int p = 0; p < partitions && problems.isEmpty(); p++) {
                List<String> expected = new ArrayList<>();
                for (int i = 0; i < perPartition; i++) expected.add("out-in-p" + p + "-" + i);
                List<String> got = readAll(bootstrap, out, p, "read_committed");
                if (!got.equals(expected)) {
                    problems.add("output p" + p + " read_committed has " + got.size() + " records ("
                            + new java.util.HashSet<>(got).size() + " distinct), want the " + perPartition + " transformed inputs in order");
                }
                uncommitted += readAll(bootstrap, out, p, "read_uncommitted").size();
            }
            if (problems.isEmpty() && uncommitted != partitions * perPartition + aborted) {
                problems.add("read_uncommitted " + uncommitted + " records, want " + (partitions * perPartition) + " + " + aborted + " aborted");
            }
            if (problems.isEmpty() && aborted == 0) problems.add("no round aborted");
            result("consume-transform-produce", problems.isEmpty(), problems.isEmpty()
                    ? rounds + " rounds (" + aborted + " records in 2 aborted rounds): output read_committed = the "
                        + partitions * perPartition + " transformed inputs, group offsets " + committed
                    : String.join(" | ", problems));
        } catch (Exception e) {
            result("consume-transform-produce", false, describe(e));
        }
    }

    /** End offset of partition 0 as a consumer of the given isolation level sees it (read_committed: the LSO). */
    static long endOffset(String bootstrap, String topic, String isolation) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        try (KafkaConsumer<byte[], byte[]> consumer =
                     new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            TopicPartition tp = new TopicPartition(topic, 0);
            return consumer.endOffsets(List.of(tp)).get(tp);
        }
    }

    /**
     * A transaction left open past its transaction.timeout.ms (2 s) is aborted by the coordinator: the last stable
     * offset moves past the abort marker (the broker checks every
     * transaction.abort.timed.out.transaction.cleanup.interval.ms, 10 s by default), read_committed sees none of its
     * records, and the producer can no longer commit it.
     */
    static void transactionTimeout(String bootstrap, Admin admin, String topic) {
        try {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(30, TimeUnit.SECONDS);
            Properties p = new Properties();
            p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, topic + "-id");
            p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "2000");
            p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
            KafkaProducer<byte[], byte[]> producer =
                    new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
            try {
                producer.initTransactions();
                producer.beginTransaction();
                sendAll(producer, topic, "doomed", 3);
                long stableWhileOpen = endOffset(bootstrap, topic, "read_committed");
                long deadline = System.currentTimeMillis() + 45_000;
                long stable = stableWhileOpen, end = -1;
                while (System.currentTimeMillis() < deadline) {
                    stable = endOffset(bootstrap, topic, "read_committed");
                    end = endOffset(bootstrap, topic, "read_uncommitted");
                    if (stable == end && end == 4) break;
                    Thread.sleep(500);
                }
                List<String> visible = readAll(bootstrap, topic, "read_committed");
                String commit;
                try {
                    producer.commitTransaction();
                    commit = "the timed-out transaction committed";
                } catch (Exception e) {
                    commit = null;
                }
                List<String> problems = new ArrayList<>();
                if (stableWhileOpen != 0) problems.add("LSO " + stableWhileOpen + " while the transaction was open, want 0");
                if (stable != 4 || end != 4) problems.add("after the timeout LSO " + stable + ", log end " + end + " (want 4, 4: 3 records and the abort marker)");
                if (!visible.isEmpty()) problems.add("read_committed sees " + visible);
                if (commit != null) problems.add(commit);
                result("transaction-timeout", problems.isEmpty(), problems.isEmpty()
                        ? "open transaction aborted by the coordinator after its 2 s timeout: LSO 0 -> 4, nothing visible, commit refused"
                        : String.join(" | ", problems));
            } finally {
                producer.close(Duration.ofSeconds(5));
            }
        } catch (Exception e) {
            result("transaction-timeout", false, describe(e));
        }
    }

    static boolean createTopic(Admin admin, String topic) {
        try {
            Set<String> names = admin.listTopics().names().get(30, TimeUnit.SECONDS);
            if (names.contains(topic)) {
                result("admin-create-topic", true, "topic " + topic + " already present");
                return true;
            }
            try {
                admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get(30, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) throw e;
            }
            // Wait until the topic is visible with its partitions (bounded).
            long deadline = System.currentTimeMillis() + 30_000;
            String last = "";
            while (System.currentTimeMillis() < deadline) {
                try {
                    TopicDescription d = admin.describeTopics(Set.of(topic)).allTopicNames()
                            .get(30, TimeUnit.SECONDS).get(topic);
                    if (d != null && d.partitions().size() == PARTITIONS
                            && d.partitions().stream().allMatch(p -> p.leader() != null && !p.leader().isEmpty())) {
                        result("admin-create-topic", true, "created " + topic + " partitions=" + PARTITIONS + " rf=1");
                        return true;
                    }
                    last = d == null ? "no description" : "partitions=" + d.partitions().size();
                } catch (ExecutionException e) {
                    last = describe(e);
                }
                Thread.sleep(200);
            }
            result("admin-create-topic", false, "topic " + topic + " not ready after 30s: " + last);
            return false;
        } catch (Exception e) {
            result("admin-create-topic", false, describe(e));
            return false;
        }
    }

    // ---------------------------------------------------------------- produce

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static List<Sent> buildRecords(String runId, String codec, int n, long baseTs) {
        Random rnd = new Random(codec.hashCode() * 31L + n);
        List<Sent> out = new ArrayList<>();
        int largeIdx = n / 2;
        for (int i = 0; i < n; i++) {
            int partition = i % PARTITIONS;
            byte[] key = (i % 11 == 5) ? null : utf8("key-" + codec + "-" + i);
            byte[] value;
            if (i == largeIdx) {
                value = new byte[LARGE_VALUE_SIZE]; // ~900 KB, incompressible
                rnd.nextBytes(value);
            } else if (i == 7) {
                value = null; // tombstone
            } else if (i % 10 == 0) {
                value = new byte[0]; // empty value
            } else {
                // compressible text followed by a random tail
                StringBuilder sb = new StringBuilder();
                int reps = (i * 37) % 60;
                for (int r = 0; r < reps; r++) sb.append("value-").append(codec).append('-').append(i).append(';');
                byte[] text = utf8(sb.toString());
                byte[] tail = new byte[(i * 13) % 200 + 1];
                rnd.nextBytes(tail);
                value = new byte[text.length + tail.length];
                System.arraycopy(text, 0, value, 0, text.length);
                System.arraycopy(tail, 0, value, text.length, tail.length);
            }
            List<Header> headers = new ArrayList<>();
            headers.add(new RecordHeader(RUN_HEADER, utf8(runId)));
            headers.add(new RecordHeader(ID_HEADER, utf8(codec + ":" + i)));
            switch (i % 4) {
                case 1:
                    headers.add(new RecordHeader("h1", utf8("v" + i)));
                    break;
                case 2:
                    headers.add(new RecordHeader("dup", (byte[]) null)); // null header value
                    headers.add(new RecordHeader("dup", new byte[0]));   // duplicate key, empty value
                    break;
                case 3:
                    byte[] bin = new byte[16];
                    rnd.nextBytes(bin);
                    headers.add(new RecordHeader("ключ-ü", bin));        // non-ASCII key, binary value
                    break;
                default:
                    break;
            }
            out.add(new Sent(codec, i, partition, key, value, headers, baseTs + i));
        }
        return out;
    }

    static List<Sent> produce(String bootstrap, String topic, String runId, String codec, int n) {
        long baseTs = System.currentTimeMillis() - 60_000;
        List<Sent> records = buildRecords(runId, codec, n, baseTs);
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "dlog-compat-java-producer-" + codec);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        // Client defaults: enable.idempotence=true, max.in.flight.requests.per.connection=5.
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        p.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, Integer.toString(2 * 1024 * 1024));
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
        String scenario = "produce-" + codec;
        List<String> problems = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
            List<Future<RecordMetadata>> futures = new ArrayList<>();
            for (Sent s : records) {
                futures.add(producer.send(new ProducerRecord<>(topic, s.partition, s.timestamp, s.key, s.value, s.headers)));
            }
            producer.flush();
            Map<Integer, Long> lastOffset = new HashMap<>();
            for (int i = 0; i < records.size(); i++) {
                Sent s = records.get(i);
                try {
                    RecordMetadata md = futures.get(i).get(60, TimeUnit.SECONDS);
                    s.offset = md.offset();
                    if (md.partition() != s.partition) problems.add(s.id() + " acked on partition " + md.partition());
                    if (md.offset() < 0) problems.add(s.id() + " acked with offset " + md.offset());
                    Long prev = lastOffset.put(s.partition, md.offset());
                    if (prev != null && md.offset() <= prev) {
                        problems.add(s.id() + " offset " + md.offset() + " not after previous " + prev + " on p" + s.partition);
                    }
                } catch (ExecutionException e) {
                    problems.add(s.id() + " send failed: " + describe(e));
                }
            }
        } catch (Exception e) {
            problems.add("producer error: " + describe(e));
        }
        if (problems.isEmpty()) {
            result(scenario, true, records.size() + " records acked (acks=all, one " + LARGE_VALUE_SIZE + "-byte value)");
        } else {
            result(scenario, false, problems.size() + " problems, first: " + String.join(" | ", problems.subList(0, Math.min(3, problems.size()))));
        }
        return records;
    }

    // ---------------------------------------------------------------- consume and compare

    static String headerString(Iterable<Header> hs) {
        StringBuilder sb = new StringBuilder("[");
        for (Header h : hs) {
            sb.append(h.key()).append('=').append(h.value() == null ? "null" : Arrays.toString(h.value())).append(',');
        }
        return sb.append(']').toString();
    }

    static String headerValue(ConsumerRecord<byte[], byte[]> r, String key) {
        Header h = r.headers().lastHeader(key);
        return h == null || h.value() == null ? null : new String(h.value(), StandardCharsets.UTF_8);
    }

    static String compare(Sent s, ConsumerRecord<byte[], byte[]> r) {
        if (r.partition() != s.partition) return "partition " + r.partition() + " != " + s.partition;
        if (r.offset() != s.offset) return "offset " + r.offset() + " != acked " + s.offset;
        if (!Arrays.equals(r.key(), s.key)) return "key differs (got " + (r.key() == null ? "null" : r.key().length + " bytes") + ")";
        if ((r.value() == null) != (s.value == null)) return "value null-ness differs (got " + (r.value() == null ? "null" : r.value().length + " bytes") + ")";
        if (!Arrays.equals(r.value(), s.value)) return "value differs (got " + r.value().length + " bytes, sent " + s.value.length + ")";
        if (r.timestamp() != s.timestamp) return "timestamp " + r.timestamp() + " != " + s.timestamp;
        String got = headerString(r.headers());
        String want = headerString(s.headers);
        if (!got.equals(want)) return "headers differ: got " + got + " want " + want;
        return null;
    }

    static void consumeAndCheck(String bootstrap, String topic, String runId, Map<String, List<Sent>> sentByCodec) {
        Map<String, Sent> byId = new HashMap<>();
        Map<Integer, List<String>> expectedOrder = new HashMap<>();
        for (List<Sent> l : sentByCodec.values()) {
            for (Sent s : l) {
                byId.put(s.id(), s);
                expectedOrder.computeIfAbsent(s.partition, k -> new ArrayList<>()).add(s.id());
            }
        }
        Map<String, Integer> seen = new HashMap<>();
        Map<String, List<String>> problems = new LinkedHashMap<>();
        for (String c : CODECS) problems.put(c, new ArrayList<>());
        Map<Integer, List<String>> gotOrder = new HashMap<>();
        int foreign = 0;
        String consumerError = null;

        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "dlog-compat-java-consumer");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "200");
        p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        List<TopicPartition> tps = new ArrayList<>();
        for (int i = 0; i < PARTITIONS; i++) tps.add(new TopicPartition(topic, i));
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<TopicPartition, Long> end = consumer.endOffsets(tps, Duration.ofSeconds(30));
            long deadline = System.currentTimeMillis() + 90_000;
            while (System.currentTimeMillis() < deadline) {
                boolean done = true;
                for (TopicPartition tp : tps) {
                    if (consumer.position(tp, Duration.ofSeconds(30)) < end.get(tp)) done = false;
                }
                if (done) break;
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    if (!runId.equals(headerValue(r, RUN_HEADER))) {
                        foreign++;
                        continue;
                    }
                    String id = headerValue(r, ID_HEADER);
                    Sent s = id == null ? null : byId.get(id);
                    if (s == null) {
                        foreign++;
                        continue;
                    }
                    gotOrder.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(id);
                    int count = seen.merge(id, 1, Integer::sum);
                    if (count > 1) {
                        problems.get(s.codec).add(id + " received " + count + " times");
                        continue;
                    }
                    String diff = compare(s, r);
                    if (diff != null) problems.get(s.codec).add(id + " " + diff);
                }
            }
            for (TopicPartition tp : tps) {
                long pos = consumer.position(tp, Duration.ofSeconds(30));
                if (pos < end.get(tp)) consumerError = "timed out at " + tp + " position " + pos + " < end " + end.get(tp);
            }
        } catch (Exception e) {
            consumerError = describe(e);
        }

        for (String codec : CODECS) {
            List<String> pr = problems.get(codec);
            int missing = 0;
            String firstMissing = null;
            for (Sent s : sentByCodec.get(codec)) {
                if (!seen.containsKey(s.id())) {
                    missing++;
                    if (firstMissing == null) firstMissing = s.id();
                }
            }
            if (missing > 0) pr.add(0, missing + " records missing (first " + firstMissing + ")");
            if (consumerError != null) pr.add(0, "consumer: " + consumerError);
            int total = sentByCodec.get(codec).size();
            if (pr.isEmpty()) {
                result("roundtrip-" + codec, true, total + " records back exactly once, key/value/headers/timestamp/offset intact");
            } else {
                result("roundtrip-" + codec, false, pr.size() + " problems, first: " + String.join(" | ", pr.subList(0, Math.min(3, pr.size()))));
            }
        }

        // Per-partition order: the run's records must come back in the order they were sent.
        List<String> orderProblems = new ArrayList<>();
        for (int part = 0; part < PARTITIONS; part++) {
            List<String> want = expectedOrder.getOrDefault(part, List.of());
            List<String> got = gotOrder.getOrDefault(part, List.of());
            if (!want.equals(got)) {
                int i = 0;
                while (i < want.size() && i < got.size() && want.get(i).equals(got.get(i))) i++;
                orderProblems.add("p" + part + " diverges at #" + i + " (want " + (i < want.size() ? want.get(i) : "end")
                        + ", got " + (i < got.size() ? got.get(i) : "end") + ")");
            }
        }
        if (orderProblems.isEmpty()) {
            result("roundtrip-order", true, "per-partition order preserved over " + byId.size() + " records" + (foreign > 0 ? " (" + foreign + " records of other runs skipped)" : ""));
        } else {
            result("roundtrip-order", false, String.join(" | ", orderProblems));
        }
    }

    // ---------------------------------------------------------------- admin

    static void listTopics(Admin admin, String topic) {
        try {
            Set<String> names = admin.listTopics().names().get(30, TimeUnit.SECONDS);
            result("admin-list-topics", names.contains(topic), names.size() + " topics" + (names.contains(topic) ? "" : ", " + topic + " missing"));
        } catch (Exception e) {
            result("admin-list-topics", false, describe(e));
        }
    }

    static void describeCluster(Admin admin) {
        try {
            DescribeClusterResult r = admin.describeCluster();
            String clusterId = r.clusterId().get(30, TimeUnit.SECONDS);
            Collection<Node> nodes = r.nodes().get(30, TimeUnit.SECONDS);
            Node controller = r.controller().get(30, TimeUnit.SECONDS);
            List<String> problems = new ArrayList<>();
            if (clusterId == null || clusterId.isEmpty()) problems.add("no cluster id");
            if (nodes.isEmpty()) problems.add("no nodes");
            for (Node node : nodes) {
                if (node.host() == null || node.host().isEmpty() || node.port() <= 0) problems.add("bad node " + node);
            }
            String detail = "clusterId=" + clusterId + " nodes=" + nodes + " controller=" + controller;
            result("admin-describe-cluster", problems.isEmpty(), problems.isEmpty() ? detail : String.join(", ", problems) + "; " + detail);
        } catch (Exception e) {
            result("admin-describe-cluster", false, describe(e));
        }
    }

    static void describeTopics(Admin admin, String topic) {
        try {
            TopicDescription d = admin.describeTopics(Set.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
            List<String> problems = new ArrayList<>();
            if (d == null) {
                result("admin-describe-topics", false, "no description for " + topic);
                return;
            }
            if (d.partitions().size() != PARTITIONS) problems.add("partitions=" + d.partitions().size() + " want " + PARTITIONS);
            if (d.isInternal()) problems.add("reported internal");
            if (d.topicId() == null || Uuid.ZERO_UUID.equals(d.topicId())) problems.add("no topic id");
            for (TopicPartitionInfo tpi : d.partitions()) {
                if (tpi.leader() == null || tpi.leader().isEmpty()) problems.add("p" + tpi.partition() + " no leader");
                if (tpi.replicas().size() != 1) problems.add("p" + tpi.partition() + " replicas=" + tpi.replicas().size());
                if (tpi.isr().isEmpty()) problems.add("p" + tpi.partition() + " empty isr");
            }
            String detail = topic + " id=" + d.topicId() + " partitions=" + d.partitions().size();
            result("admin-describe-topics", problems.isEmpty(), problems.isEmpty() ? detail : String.join(", ", problems) + "; " + detail);
        } catch (Exception e) {
            result("admin-describe-topics", false, describe(e));
        }
    }

    /**
     * The admin client's describeTopics with one partition per response: Kafka 4 clients page
     * through DescribeTopicPartitions (API 75) with its cursor, so every partition of two topics
     * must arrive once, in order; an unknown topic, asked alone, fails with
     * UnknownTopicOrPartitionException. (Asked in the same paged call as known topics, Kafka
     * 4.1.1 failed the known topics too and dlog did not; left out of the comparison.)
     */
    static void describeTopicsPaginated(Admin admin, String topic, String second) {
        try {
            admin.createTopics(List.of(new NewTopic(second, 3, (short) 1))).all().get(30, TimeUnit.SECONDS);
            String unknown = second + "-absent";
            var result = admin.describeTopics(Set.of(topic, second),
                    new DescribeTopicsOptions().partitionSizeLimitPerResponse(1));
            List<String> problems = new ArrayList<>();
            Map<String, Integer> want = Map.of(topic, PARTITIONS, second, 3);
            for (var entry : want.entrySet()) {
                TopicDescription d = result.topicNameValues().get(entry.getKey()).get(30, TimeUnit.SECONDS);
                List<Integer> indexes = new ArrayList<>();
                for (TopicPartitionInfo tpi : d.partitions()) indexes.add(tpi.partition());
                List<Integer> expected = new ArrayList<>();
                for (int i = 0; i < entry.getValue(); i++) expected.add(i);
                if (!indexes.equals(expected)) problems.add(entry.getKey() + " partitions " + indexes + " want " + expected);
            }
            try {
                admin.describeTopics(Set.of(unknown), new DescribeTopicsOptions().partitionSizeLimitPerResponse(1))
                        .topicNameValues().get(unknown).get(30, TimeUnit.SECONDS);
                problems.add("unknown topic described");
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof UnknownTopicOrPartitionException)) problems.add("unknown topic: " + describe(e));
            }
            result("admin-describe-topics-paginated", problems.isEmpty(),
                    problems.isEmpty() ? "2 topics, " + (PARTITIONS + 3) + " partitions, 1 per response" : String.join(", ", problems));
        } catch (Exception e) {
            result("admin-describe-topics-paginated", false, describe(e));
        }
    }

    static void describeConfigs(Admin admin, String topic) {
        try {
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config cfg = admin.describeConfigs(Set.of(res)).all().get(30, TimeUnit.SECONDS).get(res);
            if (cfg == null || cfg.entries().isEmpty()) {
                result("admin-describe-configs", false, "no config entries for topic " + topic);
                return;
            }
            ConfigEntry cleanup = cfg.get("cleanup.policy");
            if (cleanup == null) {
                result("admin-describe-configs", false, cfg.entries().size() + " entries but no cleanup.policy");
                return;
            }
            result("admin-describe-configs", true, cfg.entries().size() + " entries, cleanup.policy=" + cleanup.value()
                    + (cfg.get("retention.ms") != null ? " retention.ms=" + cfg.get("retention.ms").value() : ""));
        } catch (Exception e) {
            result("admin-describe-configs", false, describe(e));
        }
    }

    // ---------------------------------------------------------------- Kafka tool output checks

    /** Parses one JSON object per line; lines that are not JSON objects (log noise) are ignored. */
    static List<com.fasterxml.jackson.databind.JsonNode> readJsonLines(String file) throws java.io.IOException {
        com.fasterxml.jackson.databind.ObjectMapper om = new com.fasterxml.jackson.databind.ObjectMapper();
        List<com.fasterxml.jackson.databind.JsonNode> out = new ArrayList<>();
        for (String line : java.nio.file.Files.readAllLines(java.nio.file.Path.of(file), StandardCharsets.UTF_8)) {
            line = line.trim();
            if (!line.startsWith("{")) continue;
            try {
                out.add(om.readTree(line));
            } catch (java.io.IOException e) {
                // not JSON: ignore
            }
        }
        return out;
    }

    static String name(com.fasterxml.jackson.databind.JsonNode n) {
        return n.path("name").asText("");
    }

    /** VerifiableProducer: every one of n records acked, no send errors, tool_data.acked == tool_data.sent == n. */
    static void checkVerifiableProducer(String scenario, String file, int n) {
        try {
            List<com.fasterxml.jackson.databind.JsonNode> events = readJsonLines(file);
            long successes = 0, errors = 0, sent = -1, acked = -1;
            String firstError = null;
            Set<String> offsets = new java.util.HashSet<>();
            boolean startup = false, shutdown = false;
            for (com.fasterxml.jackson.databind.JsonNode e : events) {
                switch (name(e)) {
                    case "startup_complete": startup = true; break;
                    case "shutdown_complete": shutdown = true; break;
                    case "producer_send_success":
                        successes++;
                        offsets.add(e.path("topic").asText() + "-" + e.path("partition").asInt() + "@" + e.path("offset").asLong());
                        break;
                    case "producer_send_error":
                        errors++;
                        if (firstError == null) firstError = e.path("exception").asText() + ": " + e.path("message").asText();
                        break;
                    case "tool_data":
                        sent = e.path("sent").asLong(-1);
                        acked = e.path("acked").asLong(-1);
                        break;
                    default: break;
                }
            }
            List<String> problems = new ArrayList<>();
            if (!startup) problems.add("no startup_complete");
            if (!shutdown) problems.add("no shutdown_complete");
            if (sent != n || acked != n) problems.add("tool_data sent=" + sent + " acked=" + acked + " want " + n);
            if (successes != n) problems.add(successes + " producer_send_success events, want " + n);
            if (offsets.size() != successes) problems.add("duplicate acked offsets (" + offsets.size() + " distinct of " + successes + ")");
            if (errors > 0) problems.add(errors + " send errors, first: " + firstError);
            result(scenario, problems.isEmpty(), problems.isEmpty()
                    ? "sent=" + sent + " acked=" + acked + " (acks=-1, idempotent)"
                    : String.join(", ", problems));
        } catch (Exception e) {
            result(scenario, false, "cannot read " + file + ": " + describe(e));
        }
    }

    /** VerifiableConsumer: consumed at least n records in total (sum of records_consumed counts). */
    static void checkVerifiableConsumer(String scenario, String file, int n) {
        try {
            List<com.fasterxml.jackson.databind.JsonNode> events = readJsonLines(file);
            long consumed = 0;
            boolean assigned = false, shutdown = false;
            for (com.fasterxml.jackson.databind.JsonNode e : events) {
                switch (name(e)) {
                    case "records_consumed": consumed += e.path("count").asLong(0); break;
                    case "partitions_assigned": assigned = true; break;
                    case "shutdown_complete": shutdown = true; break;
                    default: break;
                }
            }
            List<String> problems = new ArrayList<>();
            if (!assigned) problems.add("no partitions_assigned");
            if (consumed < n) problems.add("consumed " + consumed + " < " + n);
            if (!shutdown) problems.add("no shutdown_complete");
            result(scenario, problems.isEmpty(), problems.isEmpty()
                    ? "consumed=" + consumed + " via consumer group"
                    : String.join(", ", problems));
        } catch (Exception e) {
            result(scenario, false, "cannot read " + file + ": " + describe(e));
        }
    }

    /**
     * TransactionalMessageCopier copied the n records VerifiableProducer wrote to partition 0 of {@code in} (values
     * "0" … "n-1") into {@code out}: read_committed, partition 0 of {@code out} holds each value exactly once and
     * nothing else, and the group's committed offset of {@code in}-0 is its end offset. The detail also tells how
     * many records read_uncommitted sees (copies from aborted transactions are in the log, hidden).
     */
    static void checkCopy(String bootstrap, String scenario, String in, String out, String group, int n) {
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            List<String> committed = readAll(bootstrap, out, 0, "read_committed");
            Map<String, Integer> counts = new HashMap<>();
            for (String v : committed) counts.merge(v, 1, Integer::sum);
            List<String> problems = new ArrayList<>();
            long dupes = counts.values().stream().filter(c -> c > 1).count();
            if (dupes > 0) problems.add(dupes + " values copied more than once");
            int missing = 0;
            String firstMissing = null;
            for (int i = 0; i < n; i++) {
                if (!counts.containsKey(Integer.toString(i))) {
                    missing++;
                    if (firstMissing == null) firstMissing = Integer.toString(i);
                }
            }
            if (missing > 0) problems.add(missing + " values missing (first " + firstMissing + ")");
            if (committed.size() != n) problems.add("read_committed " + committed.size() + " records, want " + n);
            Map<Integer, Long> offsets = awaitGroupOffsets(admin, group, in, Map.of(0, (long) n));
            TopicPartition tp = new TopicPartition(in, 0);
            long inEnd = admin.listOffsets(Map.of(tp, org.apache.kafka.clients.admin.OffsetSpec.latest()))
                    .partitionResult(tp).get(30, TimeUnit.SECONDS).offset();
            if (inEnd != n) problems.add("input end offset " + inEnd + ", want " + n);
            if (!Long.valueOf(inEnd).equals(offsets.get(0))) problems.add("group " + group + " committed " + offsets + ", want {0=" + inEnd + "}");
            int uncommitted = readAll(bootstrap, out, 0, "read_uncommitted").size();
            result(scenario, problems.isEmpty(), (problems.isEmpty()
                    ? "output read_committed = the " + n + " input values once each, group offset " + offsets.get(0)
                    : String.join(", ", problems)) + "; read_uncommitted " + uncommitted + " records");
        } catch (Exception e) {
            result(scenario, false, "check: " + describe(e));
        }
    }
}
