import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * End-to-end (produce -> broker -> consume) latency at a fixed rate, without a consumer group.
 *
 * One JVM runs a producer that sends RATE messages per second for WARMUP_S + MEASURE_S seconds
 * and a consumer (assign() + seekToEnd(), default fetch.min.bytes=1 / fetch.max.wait.ms=500, so
 * it relies on the broker answering a waiting fetch as soon as data arrives). Each value carries
 * its sequence number and its *scheduled* send time (System.nanoTime, same JVM), so a stalled
 * producer shows up as latency (no coordinated omission). Messages of the warm-up seconds are
 * not counted.
 *
 * Usage: FixedRateLatency BOOTSTRAP TOPIC RATE WARMUP_S MEASURE_S SIZE_BYTES ACKS [PRODUCER_PROPS...]
 * Prints: RESULT count=N p50_ms=.. p99_ms=.. p999_ms=.. max_ms=.. mean_ms=..
 * Exits 1 if any measured message is missing 15 s after the last send.
 */
public class FixedRateLatency {
    private static final int HEADER_BYTES = 16; // sequence (8) + scheduled send time ns (8)

    public static void main(String[] args) throws Exception {
        if (args.length < 7) {
            System.err.println("usage: FixedRateLatency BOOTSTRAP TOPIC RATE WARMUP_S MEASURE_S SIZE_BYTES ACKS [k=v...]");
            System.exit(2);
        }
        String bootstrap = args[0];
        String topic = args[1];
        int rate = Integer.parseInt(args[2]);
        int warmupSeconds = Integer.parseInt(args[3]);
        int measureSeconds = Integer.parseInt(args[4]);
        int sizeBytes = Math.max(HEADER_BYTES, Integer.parseInt(args[5]));
        String acks = args[6];
        long warmupMessages = (long) rate * warmupSeconds;
        long totalMessages = warmupMessages + (long) rate * measureSeconds;
        int measured = (int) (totalMessages - warmupMessages);

        Properties producerProps = new Properties();
        producerProps.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        producerProps.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        producerProps.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        producerProps.put(ProducerConfig.ACKS_CONFIG, acks);
        producerProps.put(ProducerConfig.LINGER_MS_CONFIG, "0");
        producerProps.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
        for (int i = 7; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            producerProps.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }

        Properties consumerProps = new Properties();
        consumerProps.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        consumerProps.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        consumerProps.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        consumerProps.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        consumerProps.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "latest");

        long[] latencyNs = new long[measured];
        Arrays.fill(latencyNs, -1);
        AtomicLong received = new AtomicLong();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        CountDownLatch consumerReady = new CountDownLatch(1);
        long[] lastSendNs = {0};
        volatileStop = false;

        Thread consumerThread = new Thread(() -> {
            try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(consumerProps)) {
                List<TopicPartition> partitions = new ArrayList<>();
                for (PartitionInfo info : consumer.partitionsFor(topic, Duration.ofSeconds(30))) {
                    partitions.add(new TopicPartition(info.topic(), info.partition()));
                }
                consumer.assign(partitions);
                consumer.seekToEnd(partitions);
                for (TopicPartition partition : partitions) consumer.position(partition, Duration.ofSeconds(30));
                consumerReady.countDown();
                while (!volatileStop && received.get() < totalMessages) {
                    ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(100));
                    long nowNs = System.nanoTime();
                    for (ConsumerRecord<byte[], byte[]> record : records) {
                        ByteBuffer value = ByteBuffer.wrap(record.value());
                        long sequence = value.getLong();
                        long scheduledNs = value.getLong();
                        received.incrementAndGet();
                        if (sequence >= warmupMessages && sequence < totalMessages) {
                            latencyNs[(int) (sequence - warmupMessages)] = nowNs - scheduledNs;
                        }
                    }
                }
            } catch (Throwable t) {
                failure.set(t);
                consumerReady.countDown();
            }
        }, "consumer");
        consumerThread.start();
        consumerReady.await();
        if (failure.get() != null) throw new RuntimeException("consumer failed", failure.get());

        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(producerProps)) {
            // Fetch metadata before the clock starts.
            producer.partitionsFor(topic);
            long periodNs = 1_000_000_000L / rate;
            long startNs = System.nanoTime();
            byte[] padding = new byte[sizeBytes - HEADER_BYTES];
            Arrays.fill(padding, (byte) 'x');
            for (long sequence = 0; sequence < totalMessages; sequence++) {
                long scheduledNs = startNs + sequence * periodNs;
                long waitNs;
                while ((waitNs = scheduledNs - System.nanoTime()) > 0) {
                    if (waitNs > 100_000) LockSupport.parkNanos(waitNs - 50_000);
                    else Thread.onSpinWait();
                }
                ByteBuffer value = ByteBuffer.allocate(sizeBytes);
                value.putLong(sequence).putLong(scheduledNs).put(padding);
                producer.send(new ProducerRecord<>(topic, value.array()), (metadata, error) -> {
                    if (error != null) failure.compareAndSet(null, error);
                });
                if (failure.get() != null) break;
            }
            producer.flush();
            lastSendNs[0] = System.nanoTime();
        }
        long giveUpNs = lastSendNs[0] + 15_000_000_000L;
        while (received.get() < totalMessages && System.nanoTime() < giveUpNs && failure.get() == null) {
            Thread.sleep(10);
        }
        volatileStop = true;
        consumerThread.join(10_000);
        if (failure.get() != null) throw new RuntimeException("failed", failure.get());

        long missing = Arrays.stream(latencyNs).filter(l -> l < 0).count();
        long[] sorted = Arrays.stream(latencyNs).filter(l -> l >= 0).sorted().toArray();
        if (sorted.length == 0) {
            System.err.println("no measured message arrived");
            System.exit(1);
        }
        double mean = Arrays.stream(sorted).average().orElse(0);
        System.out.printf("RESULT count=%d missing=%d p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f mean_ms=%.3f%n",
            sorted.length, missing, ms(percentile(sorted, 0.50)), ms(percentile(sorted, 0.99)),
            ms(percentile(sorted, 0.999)), ms(sorted[sorted.length - 1]), mean / 1e6);
        System.exit(missing == 0 ? 0 : 1);
    }

    private static volatile boolean volatileStop;

    private static long percentile(long[] sorted, double quantile) {
        int index = (int) Math.ceil(quantile * sorted.length) - 1;
        return sorted[Math.max(0, Math.min(sorted.length - 1, index))];
    }

    private static double ms(long ns) {
        return ns / 1e6;
    }
}
