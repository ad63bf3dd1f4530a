package dlog.compat;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.StateRestoreListener;

/**
 * A real Kafka Streams 4.1.1 word count (issue 16) against the broker at env BOOTSTRAP.
 *
 * <p>Topology: lines (4 partitions) -> flatMapValues(words) -> groupBy(word) -> count("counts") -> output.
 * groupBy makes Streams create a repartition topic and count a changelog topic (CreateTopics with
 * cleanup.policy, segment.bytes, message.timestamp.type...). Two instances with one stream thread
 * each, processing.guarantee=exactly_once_v2, the classic group protocol (the default), record cache
 * off so that every input word produces exactly one output update: with EOS, the read_committed
 * output of word w must then be exactly 1, 2, ..., count(w) -- a duplicate or a lost update shows up
 * as a repeated value or a gap, not only as a wrong final count.
 *
 * <p>Modes (first argument), each prints RESULT lines:
 * <ul>
 *   <li>instance-restart: mid-way, instance b is closed, its local state wiped (cleanUp), lines are
 *       produced while it is gone (a takes over its tasks, restoring their stores from the changelog),
 *       then b starts again.</li>
 *   <li>instance-kill9: instance b runs in a JVM of its own and is killed with SIGKILL mid-way, in the
 *       middle of its transactions; a takes over once b's session times out, b's open transactions are
 *       aborted by the broker, then b starts again (a new JVM, the same state dir).</li>
 *   <li>broker-kill9: mid-way, while lines are being produced and processed, the command in env
 *       BROKER_RESTART is run (it kills the broker with SIGKILL and starts it again on the same data).</li>
 *   <li>streams-protocol: one instance with group.protocol=streams (KIP-1071): records what the client
 *       does (runs, or fails with which error) within 60 s.</li>
 * </ul>
 */
public final class StreamsWordCount {
  static final int PARTITIONS = 4;
  static final int BATCHES = 4;
  static final int LINES_PER_BATCH = Integer.parseInt(env("LINES_PER_BATCH", "500"));
  static final long FINAL_WAIT_MS = Long.parseLong(env("FINAL_WAIT_MS", "180000"));
  static final String[] VOCABULARY = vocabulary();

  static String env(String k, String d) {
    String v = System.getenv(k);
    return v == null || v.isEmpty() ? d : v;
  }

  static String[] vocabulary() {
    // 60 distinct lowercase words; each line draws from them so every word gets a long count sequence.
    String[] w = new String[60];
    for (int i = 0; i < w.length; i++) w[i] = "w" + Integer.toString(i * 7919 + 11, 36);
    return w;
  }

  static final String BOOTSTRAP = System.getenv("BOOTSTRAP");
  static final String RUN_ID = env("RUN_ID", Long.toString(System.currentTimeMillis()));
  static final Path STATE_DIR = Path.of(env("STATE_DIR", System.getProperty("java.io.tmpdir") + "/dlog-streams-" + RUN_ID));
  static boolean failed = false;

  static void result(String name, boolean pass, String detail) {
    System.out.println("RESULT " + name + " " + (pass ? "PASS" : "FAIL") + " " + detail.replace('\n', ' '));
    System.out.flush();
    if (!pass) failed = true;
  }

  static void log(String msg) {
    System.err.printf("%tT.%<tL streams-compat: %s%n", System.currentTimeMillis(), msg);
  }

  public static void main(String[] args) throws Exception {
    if (BOOTSTRAP == null) throw new IllegalArgumentException("set BOOTSTRAP=host:port");
    String mode = args.length > 0 ? args[0] : "instance-restart";
    switch (mode) {
      case "instance-restart", "instance-kill9", "broker-kill9" -> new StreamsWordCount(mode, null).run();
      case "instance" -> new StreamsWordCount(args[1], args[2]).runChildInstance(args[3]);
      case "streams-protocol" -> streamsProtocol();
      default -> throw new IllegalArgumentException("unknown mode " + mode);
    }
    System.exit(failed ? 1 : 0);
  }

  // ---------------------------------------------------------------- word count

  final String mode;
  final String appId;
  final String input;
  final String output;
  final Map<String, Long> expected = new TreeMap<>();
  final Random random = new Random(16);
  final AtomicLong restored = new AtomicLong();
  final AtomicLong threadsReplaced = new AtomicLong();
  final ConcurrentLinkedQueue<String> threadErrors = new ConcurrentLinkedQueue<>();
  final List<KafkaStreams> running = new ArrayList<>();
  Process child; // instance b of instance-kill9
  final AtomicLong lastRunningAt = new AtomicLong(); // when an instance of this JVM last became RUNNING

  StreamsWordCount(String mode, String appId) {
    this.mode = mode;
    this.appId = appId != null ? appId : "wc-" + mode + "-" + RUN_ID;
    this.input = this.appId + "-lines";
    this.output = this.appId + "-counts-out";
  }

  static Topology topology(String input, String output) {
    StreamsBuilder b = new StreamsBuilder();
    b.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
        .flatMapValues(line -> Arrays.asList(line.toLowerCase(Locale.ROOT).split(" ")))
        .groupBy((k, word) -> word, Grouped.with("words", Serdes.String(), Serdes.String()))
        .count(Materialized.as("counts"))
        .toStream()
        .to(output, Produced.with(Serdes.String(), Serdes.Long()));
    return b.build();
  }

  Properties streamsProps(String instance) {
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
    // GUARANTEE=at_least_once is the negative control: the same checks must then catch duplicates.
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, env("GUARANTEE", StreamsConfig.EXACTLY_ONCE_V2));
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    p.put(StreamsConfig.STATE_DIR_CONFIG, STATE_DIR.resolve(instance).toString());
    p.put(StreamsConfig.CLIENT_ID_CONFIG, appId + "-" + instance);
    // Every update reaches the output (see the class comment): the sequence check needs it.
    p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
    // replication.factor stays at Streams' default (-1: the broker's default), as an application would.
    // Shorter than the 45 s default so a member lost with the broker is noticed within the test's budget.
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 15000);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 3000);
    return p;
  }

  KafkaStreams startInstance(String instance) {
    KafkaStreams ks = new KafkaStreams(topology(input, output), streamsProps(instance));
    ks.setGlobalStateRestoreListener(new StateRestoreListener() {
      @Override public void onRestoreStart(TopicPartition tp, String store, long start, long end) {
        log(instance + " restores " + store + " " + tp + " offsets " + start + ".." + end);
      }
      @Override public void onBatchRestored(TopicPartition tp, String store, long batchEnd, long n) {
        restored.addAndGet(n);
      }
      @Override public void onRestoreEnd(TopicPartition tp, String store, long total) {
        log(instance + " restored " + total + " records of " + store + " " + tp);
      }
    });
    // A thread that dies (e.g. its transaction timed out while the broker was down) is replaced, as a
    // production application would do; the number is reported, and EOS must still hold.
    ks.setUncaughtExceptionHandler(e -> {
      threadsReplaced.incrementAndGet();
      threadErrors.add(instance + ": " + e);
      log(instance + " stream thread died, replacing it: " + e);
      return StreamThreadExceptionResponse.REPLACE_THREAD;
    });
    ks.setStateListener((n, o) -> {
      log(instance + " " + o + " -> " + n);
      if (n == KafkaStreams.State.RUNNING) lastRunningAt.set(System.currentTimeMillis());
    });
    ks.start();
    running.add(ks);
    return ks;
  }

  /** Instance b of instance-kill9: a JVM of its own, so that it can be killed with SIGKILL. */
  void runChildInstance(String instance) throws InterruptedException {
    KafkaStreams ks = startInstance(instance);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> ks.close(Duration.ofSeconds(10))));
    // Until killed; and never outlive the driver (a driver killed by run.sh's timeout leaves no orphan).
    ProcessHandle parent = ProcessHandle.current().parent().orElseThrow();
    while (parent.isAlive()) Thread.sleep(1000);
    System.exit(2);
  }

  Process launchChild(String instance, int generation) throws Exception {
    List<String> cmd = new ArrayList<>();
    cmd.add(ProcessHandle.current().info().command().orElse("java"));
    cmd.addAll(java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments());
    cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), StreamsWordCount.class.getName(),
        "instance", mode, appId, instance));
    File log = STATE_DIR.resolveSibling(mode + "-" + instance + "-" + generation + ".err").toFile();
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log);
    pb.environment().put("STATE_DIR", STATE_DIR.toString());
    return pb.start();
  }

  static boolean waitLogLine(File log, String needle, long ms) throws Exception {
    long deadline = System.currentTimeMillis() + ms;
    while (System.currentTimeMillis() < deadline) {
      if (log.exists() && Files.readString(log.toPath()).contains(needle)) return true;
      Thread.sleep(200);
    }
    return false;
  }

  static boolean waitRunning(Collection<KafkaStreams> all, long ms) throws InterruptedException {
    long deadline = System.currentTimeMillis() + ms;
    while (System.currentTimeMillis() < deadline) {
      if (all.stream().allMatch(k -> k.state() == KafkaStreams.State.RUNNING)) return true;
      Thread.sleep(100);
    }
    return false;
  }

  List<String> nextBatch() {
    List<String> lines = new ArrayList<>(LINES_PER_BATCH);
    for (int i = 0; i < LINES_PER_BATCH; i++) {
      int n = 1 + random.nextInt(8);
      StringBuilder sb = new StringBuilder();
      for (int j = 0; j < n; j++) {
        String w = VOCABULARY[random.nextInt(VOCABULARY.length)];
        if (j > 0) sb.append(' ');
        sb.append(w);
        expected.merge(w, 1L, Long::sum);
      }
      lines.add(sb.toString());
    }
    return lines;
  }

  static KafkaProducer<String, String> producer() {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
    p.put(ProducerConfig.ACKS_CONFIG, "all");
    p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
    // Long enough to ride out a broker kill -9 and restart (Kafka's JVM takes ~10 s to come back).
    p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 180000);
    p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
    p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 120000);
    return new KafkaProducer<>(p, new StringSerializer(), new StringSerializer());
  }

  long lineNo = 0;

  void produce(KafkaProducer<String, String> producer, List<String> lines) {
    for (String line : lines) {
      // Keyed by line number: the lines spread over the input's partitions.
      producer.send(new ProducerRecord<>(input, Long.toString(lineNo++), line), (md, e) -> {
        if (e != null) threadErrors.add("input producer: " + e);
      });
    }
  }

  /** The output topic read read_committed from the beginning: every value per word, in order. */
  final class OutputView implements AutoCloseable {
    final KafkaConsumer<String, Long> consumer;
    final Map<String, List<Long>> values = new HashMap<>();
    long records = 0;

    OutputView() {
      Properties p = new Properties();
      p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
      p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
      p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
      p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
      consumer = new KafkaConsumer<>(p, new StringDeserializer(), new LongDeserializer());
      List<TopicPartition> tps = new ArrayList<>();
      for (int i = 0; i < PARTITIONS; i++) tps.add(new TopicPartition(output, i));
      consumer.assign(tps);
      consumer.seekToBeginning(tps);
    }

    void poll(long ms) {
      try {
        for (ConsumerRecord<String, Long> r : consumer.poll(Duration.ofMillis(ms))) {
          values.computeIfAbsent(r.key(), k -> new ArrayList<>()).add(r.value());
          records++;
        }
      } catch (org.apache.kafka.common.errors.RetriableException e) {
        log("output poll: " + e); // the broker is restarting; poll again
      }
    }

    boolean complete() {
      return expected.entrySet().stream().allMatch(e -> {
        List<Long> v = values.get(e.getKey());
        return v != null && v.get(v.size() - 1).equals(e.getValue());
      });
    }

    /** Words whose update sequence is not exactly 1..expected (duplicate, gap, extra or missing). */
    List<String> violations() {
      List<String> bad = new ArrayList<>();
      Set<String> words = new java.util.TreeSet<>(expected.keySet());
      words.addAll(values.keySet());
      for (String w : words) {
        List<Long> v = values.getOrDefault(w, List.of());
        long want = expected.getOrDefault(w, 0L);
        boolean ok = v.size() == want;
        for (int i = 0; ok && i < v.size(); i++) ok = v.get(i) == i + 1;
        if (!ok) bad.add(w + " want 1.." + want + " got " + summarize(v));
      }
      return bad;
    }

    static String summarize(List<Long> v) {
      // First irregularity with a little context, not the whole list.
      for (int i = 0; i < v.size(); i++) {
        if (v.get(i) != i + 1) {
          return v.size() + " values, at index " + i + ": "
              + v.subList(Math.max(0, i - 2), Math.min(v.size(), i + 3));
        }
      }
      return v.size() + " values 1.." + v.size();
    }

    boolean awaitRecords(long atLeast, long ms) {
      long deadline = System.currentTimeMillis() + ms;
      while (records < atLeast && System.currentTimeMillis() < deadline) poll(200);
      return records >= atLeast;
    }

    @Override public void close() { consumer.close(Duration.ofSeconds(5)); }
  }

  void createTopics() throws Exception {
    try (Admin admin = Admin.create(adminProps())) {
      admin.createTopics(List.of(new NewTopic(input, PARTITIONS, (short) 1),
          new NewTopic(output, PARTITIONS, (short) 1))).all().get(60, TimeUnit.SECONDS);
    }
  }

  static Properties adminProps() {
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
    p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 60000);
    return p;
  }

  /** The internal topics Streams created, with the configs it asked for. */
  void checkInternalTopics() throws Exception {
    String changelog = appId + "-counts-changelog";
    String repartition = appId + "-words-repartition";
    try (Admin admin = Admin.create(adminProps())) {
      Set<String> names = admin.listTopics().names().get(30, TimeUnit.SECONDS).stream()
          .filter(t -> t.startsWith(appId + "-") && !t.equals(input) && !t.equals(output))
          .collect(Collectors.toCollection(java.util.TreeSet::new));
      Map<String, TopicDescription> desc = admin.describeTopics(List.of(changelog, repartition))
          .allTopicNames().get(30, TimeUnit.SECONDS);
      Map<ConfigResource, Config> cfg = admin.describeConfigs(List.of(
          new ConfigResource(ConfigResource.Type.TOPIC, changelog),
          new ConfigResource(ConfigResource.Type.TOPIC, repartition))).all().get(30, TimeUnit.SECONDS);
      Config c = cfg.get(new ConfigResource(ConfigResource.Type.TOPIC, changelog));
      Config r = cfg.get(new ConfigResource(ConfigResource.Type.TOPIC, repartition));
      String detail = "internal " + names.stream().map(n -> n.substring(appId.length() + 1)).toList()
          + "; changelog partitions=" + desc.get(changelog).partitions().size()
          + " cleanup.policy=" + c.get("cleanup.policy").value()
          + " message.timestamp.type=" + c.get("message.timestamp.type").value()
          + "; repartition partitions=" + desc.get(repartition).partitions().size()
          + " cleanup.policy=" + r.get("cleanup.policy").value()
          + " retention.ms=" + r.get("retention.ms").value()
          + " segment.bytes=" + r.get("segment.bytes").value()
          + " message.timestamp.type=" + r.get("message.timestamp.type").value();
      boolean ok = names.equals(Set.of(appId + "-counts-changelog", appId + "-words-repartition"))
          && desc.get(changelog).partitions().size() == PARTITIONS
          && desc.get(repartition).partitions().size() == PARTITIONS
          && "compact".equals(c.get("cleanup.policy").value())
          && "delete".equals(r.get("cleanup.policy").value())
          && "-1".equals(r.get("retention.ms").value())
          && "52428800".equals(r.get("segment.bytes").value())
          && "CreateTime".equals(r.get("message.timestamp.type").value());
      result("streams-internal-topics", ok, detail);
    }
  }

  void run() throws Exception {
    long started = System.currentTimeMillis();
    Files.createDirectories(STATE_DIR);
    String disruption = "";
    try (KafkaProducer<String, String> producer = producer()) {
      createTopics();
      KafkaStreams a = startInstance("a");
      KafkaStreams b = null;
      if (mode.equals("instance-kill9")) {
        child = launchChild("b", 1);
        File log = STATE_DIR.resolveSibling(mode + "-b-1.err").toFile();
        if (!waitLogLine(log, "b REBALANCING -> RUNNING", 120000)) {
          result("streams-" + mode, false, "instance b (own JVM) not RUNNING after 120 s, see " + log);
          closeAll();
          return;
        }
      } else {
        b = startInstance("b");
      }
      if (!waitRunning(running, 120000)) {
        result("streams-" + mode, false, "instances not RUNNING after 120 s: a=" + a.state() + " b=" + (b == null ? "-" : b.state())
            + " " + threadErrors);
        closeAll();
        return;
      }
      log("both instances RUNNING after " + (System.currentTimeMillis() - started) + " ms");
      if (mode.equals("instance-restart")) checkInternalTopics();
      try (OutputView out = new OutputView()) {
        produce(producer, nextBatch());
        producer.flush();
        // Mid-way: part of batch 1 is counted and committed.
        // instance-kill9 waits longer, so that b has committed work of its own (changelog writes) to lose.
        long firstSeen = mode.equals("instance-kill9") ? 2L * LINES_PER_BATCH : LINES_PER_BATCH / 2;
        if (!out.awaitRecords(firstSeen, 120000)) {
          result("streams-" + mode, false, "only " + out.records + " committed output updates after 120 s "
              + threadErrors);
          closeAll();
          return;
        }
        if (mode.equals("instance-restart")) {
          long before = restored.get();
          // Leave the group on close so a takes over b's tasks now rather than after the session timeout.
          b.close(new KafkaStreams.CloseOptions().leaveGroup(true).timeout(Duration.ofSeconds(30)));
          running.remove(b);
          b.cleanUp(); // b's local stores are gone: whoever gets its tasks restores from the changelog
          produce(producer, nextBatch());
          producer.flush();
          boolean aRunning = waitRunning(List.of(a), 120000);
          out.awaitRecords(out.records + LINES_PER_BATCH, 60000);
          KafkaStreams b2 = startInstance("b");
          boolean bothRunning = waitRunning(List.of(a, b2), 120000);
          long restoredNow = restored.get() - before;
          disruption = "b closed after " + firstSeen + "+ updates and its state wiped, restarted; a RUNNING="
              + aRunning + ", both RUNNING again=" + bothRunning + ", " + restoredNow
              + " changelog records restored";
          if (restoredNow == 0) disruption += " (NO RESTORE)";
          produce(producer, nextBatch());
        } else if (mode.equals("instance-kill9")) {
          // b dies with SIGKILL in the middle of its transactions: no commit, no LeaveGroup, no
          // checkpoint. Its open transactions must be aborted (transaction.timeout.ms, 10 s under EOS)
          // and a must take over its tasks after the session timeout, restoring their stores.
          produce(producer, nextBatch());
          long seenAtKill = out.records;
          long before = restored.get();
          child.destroyForcibly().waitFor();
          long t0 = System.currentTimeMillis();
          producer.flush();
          // a rebalances once b's session times out (15 s) and runs b's tasks, restoring their stores.
          while (lastRunningAt.get() < t0 && System.currentTimeMillis() < t0 + 90000) Thread.sleep(100);
          long takeover = System.currentTimeMillis() - t0;
          boolean progressed = out.awaitRecords(seenAtKill + LINES_PER_BATCH, 120000);
          long restoredByA = restored.get() - before;
          child = launchChild("b", 2);
          boolean bBack = waitLogLine(STATE_DIR.resolveSibling(mode + "-b-2.err").toFile(),
              "b REBALANCING -> RUNNING", 120000);
          disruption = "instance b (own JVM) killed -9 after " + seenAtKill + " committed updates; a RUNNING with b's tasks after "
              + takeover + " ms, " + restoredByA + " changelog records restored, progressed=" + progressed
              + "; b restarted RUNNING=" + bBack;
          // Not required: records restored by a (b may have committed little of its own tasks' state).
          if (takeover >= 90000 || !progressed || !bBack) disruption += " (NO TAKEOVER)";
          produce(producer, nextBatch());
        } else {
          String cmd = System.getenv("BROKER_RESTART");
          if (cmd == null) throw new IllegalArgumentException("broker-kill9 needs env BROKER_RESTART");
          // Twice: batch 2, then batch 3, is in flight (sent, not flushed) and being processed when
          // the broker is killed; before the second kill the application has made progress again.
          List<String> kills = new ArrayList<>();
          for (int kill = 1; kill <= 2; kill++) {
            long seen = out.records;
            if (kill == 2 && !out.awaitRecords(seen + LINES_PER_BATCH, 120000)) {
              result("streams-" + mode, false, "no progress after the first restart: " + out.records
                  + " committed updates " + threadErrors);
              closeAll();
              return;
            }
            produce(producer, nextBatch());
            long t0 = System.currentTimeMillis();
            Process p = new ProcessBuilder("bash", "-c", cmd).inheritIO()
                .redirectOutput(ProcessBuilder.Redirect.appendTo(new File(STATE_DIR.toFile(), "restart.log"))).start();
            int rc = p.waitFor();
            kills.add("after " + out.records + " updates (" + (System.currentTimeMillis() - t0) + " ms)");
            if (rc != 0) {
              result("streams-" + mode, false, "restart command failed (exit " + rc + ") " + kills);
              closeAll();
              return;
            }
          }
          disruption = "broker killed -9 and restarted twice, " + String.join(" and ", kills);
        }
        produce(producer, nextBatch());
        producer.flush();
        long deadline = System.currentTimeMillis() + FINAL_WAIT_MS;
        while (!out.complete() && System.currentTimeMillis() < deadline) out.poll(500);
        out.poll(2000); // anything past the expected counts (a duplicate) shows up too
        List<String> bad = out.violations();
        long total = expected.values().stream().mapToLong(Long::longValue).sum();
        String states = running.stream().map(k -> k.state().toString()).collect(Collectors.joining(","));
        String detail = BATCHES * LINES_PER_BATCH + " lines, " + total + " words over " + expected.size()
            + " distinct; " + disruption + "; " + out.records + " committed updates read; instances " + states
            + "; threads replaced " + threadsReplaced.get() + "; " + (System.currentTimeMillis() - started) / 1000 + " s";
        if (bad.isEmpty()) {
          result("streams-" + mode, true, "every word's read_committed updates are exactly 1..count: " + detail);
        } else {
          result("streams-" + mode, false, bad.size() + " words wrong, e.g. " + bad.subList(0, Math.min(3, bad.size()))
              + ": " + detail + " errors " + threadErrors.stream().limit(3).toList());
        }
        if (bad.isEmpty() && (disruption.contains("NO RESTORE") || disruption.contains("NO TAKEOVER"))) {
          result("streams-" + mode + "-restore", false, "the surviving instance did not take over and restore: " + disruption);
        }
      }
    } finally {
      closeAll();
      deleteRecursively(STATE_DIR);
    }
  }

  void closeAll() {
    if (child != null) {
      child.destroy(); // SIGTERM: its shutdown hook closes it
      try {
        if (!child.waitFor(30, TimeUnit.SECONDS)) child.destroyForcibly();
      } catch (InterruptedException e) {
        child.destroyForcibly();
      }
      child = null;
    }
    for (KafkaStreams k : running) k.close(Duration.ofSeconds(20));
    running.clear();
  }

  static void deleteRecursively(Path p) {
    if (!Files.exists(p)) return;
    try (var s = Files.walk(p)) {
      s.sorted(Comparator.reverseOrder()).forEach(x -> x.toFile().delete());
    } catch (Exception e) {
      log("cleanup " + p + ": " + e);
    }
  }

  // ---------------------------------------------------------------- group.protocol=streams

  /** What a Streams client configured for KIP-1071 does against this broker: runs, or which error. */
  static void streamsProtocol() throws Exception {
    String appId = "wc-streams-protocol-" + RUN_ID;
    String input = appId + "-lines";
    try (Admin admin = Admin.create(adminProps())) {
      admin.createTopics(List.of(new NewTopic(input, 1, (short) 1))).all().get(60, TimeUnit.SECONDS);
    }
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, BOOTSTRAP);
    p.put(StreamsConfig.STATE_DIR_CONFIG, STATE_DIR.resolve("p").toString());
    p.put(StreamsConfig.GROUP_PROTOCOL_CONFIG, "streams");
    AtomicReference<Throwable> error = new AtomicReference<>();
    KafkaStreams ks = new KafkaStreams(topology(input, appId + "-out"), p);
    ks.setUncaughtExceptionHandler(e -> {
      error.compareAndSet(null, e);
      return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    long t0 = System.currentTimeMillis();
    ks.start();
    long deadline = t0 + 60000;
    while (System.currentTimeMillis() < deadline && error.get() == null
        && ks.state() != KafkaStreams.State.RUNNING && ks.state() != KafkaStreams.State.ERROR) {
      Thread.sleep(100);
    }
    String state = ks.state().toString();
    long ms = System.currentTimeMillis() - t0;
    ks.close(Duration.ofSeconds(10));
    deleteRecursively(STATE_DIR);
    Throwable e = error.get();
    Throwable root = e;
    while (root != null && root.getCause() != null) root = root.getCause();
    // PASS: the client either runs or stops with an error that names the problem, within 60 s.
    if (e != null) {
      result("streams-group-protocol-streams", true, "client stopped after " + ms + " ms (state " + state + "): "
          + root.getClass().getSimpleName() + ": " + root.getMessage());
    } else if (state.equals("RUNNING")) {
      result("streams-group-protocol-streams", true, "RUNNING after " + ms + " ms (the broker serves KIP-1071)");
    } else {
      result("streams-group-protocol-streams", false, "neither RUNNING nor an error after " + ms + " ms: state " + state);
    }
  }
}
