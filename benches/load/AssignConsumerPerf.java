import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Consume throughput without a consumer group: the same measurement as Kafka's
 * ConsumerPerformance (bytes = key + value lengths, MB = 2^20 bytes, same fetch size and socket
 * buffer defaults), but with assign() + seekToBeginning() instead of subscribe(), which needs
 * FindCoordinator/JoinGroup.
 *
 * Usage: AssignConsumerPerf BOOTSTRAP TOPIC MESSAGES TIMEOUT_MS
 * Prints: RESULT messages=N bytes=B seconds=S mb_per_sec=X msg_per_sec=Y
 * Exits 1 if fewer than MESSAGES records arrive before TIMEOUT_MS.
 */
public class AssignConsumerPerf {
    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: AssignConsumerPerf BOOTSTRAP TOPIC MESSAGES TIMEOUT_MS");
            System.exit(2);
        }
        String bootstrap = args[0];
        String topic = args[1];
        long messagesWanted = Long.parseLong(args[2]);
        long timeoutMs = Long.parseLong(args[3]);

        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        // ConsumerPerformance's defaults: --fetch-size 1 MiB, --socket-buffer-size 2 MiB.
        props.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, Integer.toString(1024 * 1024));
        props.put(ConsumerConfig.RECEIVE_BUFFER_CONFIG, Integer.toString(2 * 1024 * 1024));
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "assign-consumer-perf");

        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            List<TopicPartition> partitions = new ArrayList<>();
            for (PartitionInfo info : consumer.partitionsFor(topic, Duration.ofSeconds(30))) {
                partitions.add(new TopicPartition(info.topic(), info.partition()));
            }
            if (partitions.isEmpty()) {
                throw new IllegalStateException("topic " + topic + " has no partitions");
            }
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            for (TopicPartition partition : partitions) {
                consumer.position(partition, Duration.ofSeconds(30)); // resolve offsets before timing
            }

            long messages = 0;
            long bytes = 0;
            long startNs = System.nanoTime();
            long deadlineNs = startNs + timeoutMs * 1_000_000L;
            long lastRecordNs = startNs;
            while (messages < messagesWanted && System.nanoTime() < deadlineNs) {
                ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(100));
                for (ConsumerRecord<byte[], byte[]> record : records) {
                    messages++;
                    if (record.key() != null) bytes += record.key().length;
                    if (record.value() != null) bytes += record.value().length;
                }
                if (!records.isEmpty()) lastRecordNs = System.nanoTime();
            }
            double seconds = (lastRecordNs - startNs) / 1e9;
            double mb = bytes / (1024.0 * 1024.0);
            System.out.printf("RESULT messages=%d bytes=%d seconds=%.3f mb_per_sec=%.2f msg_per_sec=%.1f%n",
                messages, bytes, seconds, mb / seconds, messages / seconds);
            if (messages < messagesWanted) {
                System.err.printf("timeout: consumed %d of %d messages in %d ms%n", messages, messagesWanted, timeoutMs);
                System.exit(1);
            }
        }
    }
}
